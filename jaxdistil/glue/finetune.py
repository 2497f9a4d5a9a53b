"""Fine-tune an encoder on one GLUE task and score it on the dev set(s).

The head sits on the first token's last hidden state, as in Hugging Face's
sequence-classification models (`glue.heads`: DistilBERT's, BERT's with its
pooler, RoBERTa's). STS-B is a regression (one output, mean squared error); the other tasks use
softmax cross-entropy.

Training is one jitted step (forward, loss, gradients, optax AdamW update) over
a data-parallel mesh (`jaxdistil.sharding`), with the defaults of transformers'
`run_glue` and the paper: lr 2e-5, batch 32, 3 epochs, max_len 128, linear
warm-up over 6% of the steps then linear decay to 0, weight decay 0.01 on
kernels and embeddings only (not biases or LayerNorm), gradient clipping at 1.

Batches are cut to length buckets (`length_buckets`, on by default): each
example is padded only to the smallest of a few fixed lengths that holds it
(8, 12, 16, 24, 32, 48, 64, 96, 128 for max_len 128; see `bucket_lengths`),
not to max_len. GLUE sentences are short (CoLA averages 11 tokens, so at 128
it is 91% padding), and padding is masked out, so this changes no result of
the model, only the work done. Each bucket is one batch shape, so one compile
of the train step and one of prediction. A training epoch shuffles, groups the
examples by bucket, cuts each group into batches and shuffles the batches; a
bucket's last batch is short and padded with zero-weight rows (so the loss is
the mean over real examples only), which gives up to one more step per bucket
per epoch than ceil(n / batch_size). Dev sets are sorted by length, batched,
and the predictions put back in order. `length_buckets=False` pads everything
to max_len, in the original order: the behaviour before buckets. Results
report the padding fraction (padding tokens over all tokens of the batches
run, zero-weight rows included) of training and evaluation.

Only dev sets are evaluated. With several seeds, each seed re-initialises the
head, reshuffles and re-draws dropout; the result reports every seed and the
median (the paper's Table 1 gives the median of 5 runs).

This module is the per-task driver (data, seeds, the loop over seeds). The
pieces it drives live beside it: `glue.config` (`FinetuneConfig`),
`glue.batching` (the batch plans), `glue.step` (the jitted step, `fit` and
prediction), `glue.stage1` (TinyBERT's intermediate stage), `glue.heads`,
`glue.kd` (the distillation losses) and `glue.seeds` (medians and top-ups).
The names the tests reach as `finetune.X` are re-exported here; other
modules import each from its home.

Over 300 lines on purpose: a task's data, the setup its seeds share
(`_Setup`), their checkpoints and their results are one task's run.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Sequence

import jax
import numpy as np

from jaxdistil import sharding
from jaxdistil.glue import data as glue_data
from jaxdistil.glue import heads, kd
from jaxdistil.glue import metrics as glue_metrics
# Also re-exported for the tests, which reach them as `finetune.X`:
# `_batch` and `_mesh` are the old names of `batching.padded_rows` and
# `step.mesh_of`.
from jaxdistil.glue.batching import (  # noqa: F401
    bucket_lengths, bucket_of, eval_padding_fraction, eval_plan,
    padded_rows as _batch, padding_fraction, steps_per_epoch, total_steps,
    train_indexes, train_plan)
from jaxdistil.glue.config import FinetuneConfig
from jaxdistil.glue.distill_rows import with_teacher
from jaxdistil.glue.seeds import median_seed, stored_seeds, summarize
from jaxdistil.glue.step import (  # noqa: F401
    Compiled, check_settings, compile_steps, eval_batch_size, evaluate, fit,
    forward, loss_fn, mesh_of, mesh_of as _mesh, predict_logits, predict_step,
    train_step)
from jaxdistil.glue.stage1 import compile_intermediate, intermediate_stage
from jaxdistil.glue.tasks import GlueError, Task, get as get_task
from jaxdistil.models import bert


# ----------------------------------------------------------------------------
# Running a task

@dataclasses.dataclass
class TaskData:
  train: dict                       # encoded arrays
  dev: dict                         # split name -> encoded arrays
  skipped: int
  train_examples: glue_data.Examples | None = None   # the texts of `train`


def load_task_data(task: Task, data_dir, tokenizer, cfg: FinetuneConfig,
                   vocab_size: int, source: str = 'tsv', seed: int = 0,
                   family: str = 'bert') -> TaskData:
  """The task's train (capped at `max_train_examples`) and dev splits, encoded
  for a model of `family` (RoBERTa's pairs: `<s> a </s></s> b </s>`)."""
  style = glue_data.style_of(family)
  train = glue_data.read_split(task, glue_data.TRAIN, data_dir, source)
  skipped = train.skipped
  train = glue_data.subsample(train, cfg.max_train_examples, seed)
  if len(train) == 0:
    raise GlueError(f'{train.origin}: no training examples')
  train_arrays = glue_data.encode(train, tokenizer, cfg.max_len, style)
  dev = glue_data.encode_dev(task, data_dir, tokenizer, cfg.max_len, source,
                             style)
  glue_data.check_vocab([train_arrays, *dev.values()], vocab_size)
  return TaskData(train_arrays, dev, skipped, train)


class _Setup(NamedTuple):
  """What every seed of a task shares: the mesh, the compiled steps and the
  encoder they start from, and the task's plan."""
  mesh: object
  compiled: Compiled
  stage1: Compiled | None        # TinyBERT's stage 1, when asked for
  rest: dict                     # untrained params, on the mesh
  encoder: dict                  # the starting encoder, on the host
  new_head: Callable             # key -> a fresh head
  template: dict                 # the params tree, as shapes
  steps: int
  eval_batch: int
  buckets: tuple
  train_lengths: np.ndarray
  eval_padding: float


def _setup(task: Task, bert_cfg: bert.BertConfig, encoder_params: dict,
           task_data: TaskData, cfg: FinetuneConfig, online) -> _Setup:
  """The mesh, the compiled steps (and stage 1) and the plan of a task."""
  mesh = mesh_of(cfg)
  check_settings(bert_cfg, cfg, mesh)
  eval_batch = eval_batch_size(cfg, mesh)
  encoder, rest, pooler = heads.split_encoder_params(bert_cfg,
                                               jax.device_get(encoder_params))
  buckets = bucket_lengths(cfg.max_len, cfg.length_buckets)
  train_lengths = glue_data.lengths(task_data.train)
  steps = total_steps(train_lengths, cfg)
  new_head = lambda key: heads.init_head(bert_cfg, task.num_outputs, key, pooler)
  template = {'encoder': encoder,
              'head': jax.eval_shape(new_head, jax.random.key(0))}
  if online is not None:
    rest = dict(rest, teacher={'params': jax.device_get(online[1]),
                               'rest': jax.device_get(online[2])})
  compiled = compile_steps(task, bert_cfg, cfg, template, rest, steps, mesh,
                           teacher_cfg=online[0] if online is not None else None)
  stage1 = None
  if cfg.kd_intermediate_steps:
    if online is None:
      raise GlueError('the intermediate stage matches the teacher\'s hidden '
                      'states inside the step: give --kd_online too')
    stage1 = compile_intermediate(bert_cfg, online[0], cfg, template, rest,
                                  cfg.kd_intermediate_steps, mesh)
  return _Setup(mesh, compiled, stage1, jax.device_put(rest, compiled.rest),
                encoder, new_head, template, steps, eval_batch, buckets,
                train_lengths,
                eval_padding_fraction(task_data.dev, eval_batch, buckets))


def _resume(run, seed: int, setup: _Setup, params, opt_state,
            checkpoint_every: int):
  """(params, opt_state, first step, on_step) of a seed of `run`: from its
  last checkpoint when it was cut off; `on_step` writes one every
  `checkpoint_every` steps (None when 0)."""
  start = 0
  resumed = run.checkpoint(seed, jax.device_get(params),
                           jax.device_get(opt_state))
  if resumed is not None:
    host_params, host_opt, start = resumed
    params = jax.device_put(host_params, setup.compiled.params)
    opt_state = jax.device_put(host_opt, jax.tree.map(
        lambda x: x.sharding, opt_state))

  def on_step(step, p, o):
    if step % checkpoint_every == 0 and step < setup.steps:
      run.save_checkpoint(seed, p, o, step)
  return params, opt_state, start, (on_step if checkpoint_every else None)


def _train_seed(setup: _Setup, task: Task, models: tuple, task_data: TaskData,
                cfg: FinetuneConfig, seed: int, progress: bool, run,
                checkpoint_every: int):
  """(the seed's dev result, its fine-tuned params): a fresh head, stage 1
  when asked for, `fit`, the dev metrics. `models`: (student config, the
  online teacher's config or None)."""
  from tqdm.auto import tqdm
  s = setup
  key_head, key_dropout = jax.random.split(jax.random.key(seed))
  # Fresh buffers from host copies: the train step donates them.
  params = jax.device_put({'encoder': s.encoder,
                           'head': jax.device_get(s.new_head(key_head))},
                          s.compiled.params)
  opt_state = s.compiled.init_opt(params)
  start, on_step = 0, None
  if run is not None:
    params, opt_state, start, on_step = _resume(run, seed, s, params,
                                                opt_state, checkpoint_every)
  if s.stage1 is not None and start == 0:
    params = intermediate_stage(s.stage1, params, s.rest, task_data.train, cfg,
                                jax.random.fold_in(key_dropout, 1), seed,
                                s.mesh, progress, task.name, models)
    opt_state = s.compiled.init_opt(params)
  times = []
  with tqdm(total=s.steps, initial=start, desc=f'{task.name} seed {seed}',
            leave=False, disable=not progress, dynamic_ncols=True) as bar:
    params, loss = fit(s.compiled, params, opt_state, s.rest, task_data.train,
                       cfg, s.steps, key_dropout, seed, s.mesh, bar,
                       start=start, on_step=on_step, times=times)
  with sharding.constraints(s.mesh):
    dev_metrics = evaluate(
        task, lambda arrays: predict_logits(s.compiled.predict, params, s.rest,
                                            arrays, s.eval_batch, s.mesh,
                                            s.buckets), task_data.dev)
  train_padding = padding_fraction(
      s.train_lengths, train_plan(s.train_lengths, cfg.batch_size, s.steps,
                                  seed, s.buckets), cfg.batch_size)
  result = {'seed': int(seed), 'metrics': dev_metrics,
            'score': glue_metrics.task_score(dev_metrics, task.metric_keys()),
            'final_loss': loss, 'steps': s.steps,
            'padding_fraction': {'train': train_padding,
                                 'eval': s.eval_padding}}
  if run is not None:
    run.finish(seed, params, result)
  # Wall time of the steps run in this process (a resumed seed: its last
  # part) and the median step (compiles fall in each bucket's first step);
  # kept apart from the result, which does not depend on the machine.
  result['_timing'] = {'seed': int(seed), 'train_s': float(sum(times)),
                       'steps_timed': len(times),
                       'step_s_median': (float(np.median(times)) if times
                                         else None)}
  return result, params


def finetune_seeds(task: Task, bert_cfg: bert.BertConfig, encoder_params: dict,
                   task_data: TaskData, cfg: FinetuneConfig,
                   seeds: Sequence[int], progress: bool = True,
                   keep_params: bool = False, run=None,
                   checkpoint_every: int = 0, online=None) -> list[dict]:
  """Fine-tune once per seed from the same encoder; per-seed dev results.

  Each seed draws its own head initialisation, data order and dropout. With
  `keep_params`, each result also holds its fine-tuned model under '_params'
  ({'encoder', 'head'}, on the host), which is not part of the JSON.

  With `run` (a `glue.resume.RunFolder`), a seed that is done there is read
  back instead of trained, a cut-off one continues from its last checkpoint,
  and a checkpoint is written every `checkpoint_every` steps. `online`
  ((config, {'encoder', 'head'}, rest) of a teacher) computes the teacher's
  logits inside the step."""
  setup = _setup(task, bert_cfg, encoder_params, task_data, cfg, online)
  models = (bert_cfg, online[0] if online is not None else None)
  results = []
  for seed in seeds:
    done = (run.done(seed, template_host(setup.template)) if run is not None
            else None)
    if done is not None:
      result, params = done
    else:
      result, params = _train_seed(setup, task, models, task_data, cfg, seed,
                                   progress, run, checkpoint_every)
    if keep_params:
      result = dict(result, _params=jax.device_get(params))
    results.append(result)
  return results


def template_host(template: dict) -> dict:
  """Zeros in the shapes of a params template (arrays or shapes)."""
  return jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), template)


def run_task(task, data_dir, bert_config: bert.BertConfig, encoder_params: dict,
             tokenizer, *, seeds: int = 1, epochs: float = 3.0,
             lr: float = 2e-5, batch_size: int = 32, max_len: int = 128,
             max_steps: int | None = None, seed: int = 0, source: str = 'tsv',
             progress: bool = True, previous: dict | None = None,
             keep_best: bool = False, teacher=None, transfer=None,
             run_dir: str | None = None, run_identity: dict | None = None,
             checkpoint_every: int = 0, online_teacher=None,
             **overrides) -> dict:
  """Fine-tune on `task`'s train split `seeds` times; dev metrics and medians.

  `task` is a name or a `Task`; `source` 'tsv' (glue_data folders in
  `data_dir`) or 'tfds' (built TFDS `glue/*` in `data_dir`). Seeds are
  seed, seed+1, ... . Other `FinetuneConfig` fields can be given as keywords
  (`max_train_examples`, `head_dropout`, `mesh`, ...).

  Returns {'task', 'score' (median task score, points), 'metrics' (median of
  each metric), 'per_seed' [{'seed', 'metrics', 'score', 'final_loss',
  'steps', 'padding_fraction'}], 'num_train', 'num_dev', 'skipped_rows',
  'buckets' (the padded lengths), 'padding_fraction' ({'train', 'eval'}: mean
  over seeds of padding tokens / all tokens of the batches run), 'config'}.

  `previous`, an earlier result of this call with fewer seeds and the same
  settings, tops it up: its seeds are kept as they are, only the missing ones
  run, and the medians are over all of them.

  `teacher(examples, split) -> [N, outputs]` (logits in the task's class
  order) turns on task distillation (`kd`; T, alpha and beta as
  `kd_temperature`, `kd_alpha`, `kd_beta`): its logits for every training
  row are computed once, before the seeds run. `transfer` (a
  `glue.augment.TransferSet` made from these training rows) adds unlabelled
  rows that the teacher alone teaches.
  `online_teacher` ((config, {'encoder', 'head'}, rest), on the student's own
  tokens: the same tokenizer) runs the teacher inside each step instead.

  `run_dir` makes the run resumable (`glue.resume`): finished seeds are kept
  there, a cut-off one continues from its checkpoint (every
  `checkpoint_every` steps); `run_identity` (the model, the teacher, ...)
  is recorded with the settings, and a folder of another run is refused.

  `keep_best` adds '_best': {'seed', 'params'}, the fine-tuned model of the
  median seed (`median_seed`) among the seeds run now, for saving; pop it
  before writing the result as JSON.

  Over 60 lines for a reason: 40 of them are this docstring, the reference of
  its arguments and result; the body is about 50.
  """
  task = task if isinstance(task, Task) else get_task(task)
  if seeds < 1:
    raise GlueError(f'seeds={seeds}: at least one run is needed')
  distill = teacher is not None or online_teacher is not None
  if transfer is not None and not distill:
    raise GlueError('a transfer set is labelled by a teacher: give --teacher too')
  cfg = FinetuneConfig(learning_rate=lr, batch_size=batch_size, epochs=epochs,
                       max_len=max_len, max_steps=max_steps,
                       distill=distill, **overrides)
  kd.check_settings(cfg.kd_temperature, cfg.kd_alpha, cfg.kd_beta)
  bucket_lengths(cfg.max_len, cfg.length_buckets)  # malformed: fail before reading
  settings = cfg.settings()
  kept = stored_seeds(task, previous, settings, seed) if previous else []
  task_data = load_task_data(task, data_dir, tokenizer, cfg,
                             bert_config.vocab_size, source, seed,
                             bert_config.family)
  teacher_found = None
  if distill:
    task_data, teacher_found = with_teacher(
        task, task_data, teacher, transfer, tokenizer, cfg, bert_config,
        online=online_teacher is not None)
  todo = [seed + i for i in range(len(kept), seeds)]
  run = None
  if run_dir:
    from jaxdistil.glue import resume
    run = resume.RunFolder(run_dir, {
        'task': task.name, 'settings': settings, 'first_seed': seed,
        'num_train': int(len(task_data.train['labels'])), **(run_identity or {})})
  ran = (finetune_seeds(task, bert_config, encoder_params, task_data, cfg, todo,
                        progress, keep_params=keep_best, run=run,
                        checkpoint_every=checkpoint_every,
                        online=online_teacher) if todo else [])
  models = {r['seed']: r.pop('_params') for r in ran if '_params' in r}
  timing = [r.pop('_timing') for r in ran if '_timing' in r]
  per_seed = kept + ran
  best = {}
  if keep_best and models:
    chosen = median_seed([r for r in ran])
    best = {'_best': {'seed': chosen, 'params': models[chosen]}}
  return {'task': task.name, **summarize(task, per_seed), 'per_seed': per_seed,
          'num_train': int(len(task_data.train['labels'])),
          'num_dev': {k: int(len(v['labels'])) for k, v in task_data.dev.items()},
          'skipped_rows': int(task_data.skipped),
          'buckets': list(bucket_lengths(cfg.max_len, cfg.length_buckets)),
          'padding_fraction': {
              k: float(np.mean([r['padding_fraction'][k] for r in per_seed]))
              for k in ('train', 'eval')},
          'config': settings, **({'timing': timing} if timing else {}),
          **({'teacher_check': teacher_found._asdict()} if teacher_found else {}),
          **best}
