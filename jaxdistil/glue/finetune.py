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

Over 300 lines (about 560): the jitted step, the length-bucketed batch plan
and the per-task driver share `FinetuneConfig` and `Compiled`. The heads live
in `glue.heads`; the batch plan is the next piece that could move out.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxdistil import optim, sharding
from jaxdistil.glue import data as glue_data
from jaxdistil.glue import heads, kd
from jaxdistil.glue.batching import (  # noqa: F401  (the batch plan, re-exported)
    Batch, _batch, bucket_lengths, bucket_of, epoch_batches, eval_padding_fraction,
    eval_plan, padding_fraction, steps_per_epoch, token_counts, total_steps,
    train_indexes, train_plan)
from jaxdistil.glue import metrics as glue_metrics
from jaxdistil.glue.tasks import GlueError, Task, get as get_task
from jaxdistil.models import bert


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
  learning_rate: float = 2e-5
  batch_size: int = 32
  epochs: float = 3.0
  max_len: int = 128
  max_steps: int | None = None      # overrides epochs when set
  warmup_fraction: float = 0.06
  weight_decay: float = 0.01
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  clip_norm: float = 1.0
  head_dropout: float = 0.1
  eval_batch_size: int = 128
  max_train_examples: int | None = None   # random subset of train (smoke runs)
  length_buckets: bool | tuple = True     # False: pad to max_len; or lengths
  mesh: tuple = (('data', -1),)           # {'data': d, 'fsdp': f, 'tensor': t}
  # Task distillation (`glue.kd`), on when a teacher's logits are given: T,
  # the teacher's weight against the labels (alpha: classes; beta: a score).
  distill: bool = False
  kd_temperature: float = kd.TEMPERATURE
  kd_alpha: float = kd.ALPHA
  kd_beta: float = kd.BETA

  def settings(self) -> dict:
    """The settings a result records (and a top-up compares); the
    distillation ones only when distilling, so that results of plain
    fine-tuning read the same as before they existed."""
    out = {**dataclasses.asdict(self), 'mesh': dict(self.mesh)}
    if not self.distill:
      for k in ('distill', 'kd_temperature', 'kd_alpha', 'kd_beta'):
        del out[k]
    return out

  def optim_config(self) -> optim.OptimConfig:
    return optim.OptimConfig(
        learning_rate=self.learning_rate, b1=self.b1, b2=self.b2, eps=self.eps,
        weight_decay=self.weight_decay, warmup_fraction=self.warmup_fraction,
        clip_norm=self.clip_norm)


# ----------------------------------------------------------------------------
# The model: encoder + head, as pure functions

def forward(cfg: bert.BertConfig, params: dict, rest: dict, batch: dict,
            head_dropout: float, rng=None):
  enc_rng = head_rng = None
  if rng is not None:
    enc_rng, head_rng = jax.random.split(rng)
  out = bert.apply(cfg, {**params['encoder'], **rest}, batch['input_ids'],
                   batch['attention_mask'], batch['token_type_ids'],
                   dropout_rng=enc_rng)
  return heads.head_apply(params['head'], out.hidden_states[-1][:, 0], head_dropout,
                    head_rng)


def loss_fn(logits, labels, weights, regression: bool):
  """Mean over rows with weight 1: MSE for regression, else cross-entropy."""
  if regression:
    per_row = jnp.square(logits[:, 0] - labels.astype(jnp.float32))
  else:
    per_row = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return jnp.sum(per_row * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def train_step(cfg, tx, regression, head_dropout, params, opt_state, rest,
               batch, key, step, distill: tuple | None = None):
  """One AdamW step; pure (dropout keyed on (key, step)). With `distill`
  (T, alpha, beta), the loss is `kd.task_loss` against the batch's
  'teacher_logits', the labels weighted by its 'label_weights'."""
  rng = jax.random.fold_in(key, step)

  def loss_of(p):
    logits = forward(cfg, p, rest, batch, head_dropout, rng)
    if distill is None:
      return loss_fn(logits, batch['labels'], batch['weights'], regression)
    temperature, alpha, beta = distill
    total, _ = kd.task_loss(logits, batch['teacher_logits'], batch['labels'],
                            batch['weights'], batch['label_weights'], regression,
                            temperature=temperature, alpha=alpha, beta=beta)
    return total

  loss, grads = jax.value_and_grad(loss_of)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


def predict_step(cfg, params, rest, batch):
  return forward(cfg, params, rest, batch, 0.0, None)


# ----------------------------------------------------------------------------
# Sharding and batches

def _mesh(cfg: FinetuneConfig):
  return sharding.make_mesh(dict(cfg.mesh))


def param_shardings(bert_cfg: bert.BertConfig, params: dict, mesh) -> dict:
  """Encoder params by their logical axes (replicated on a pure data mesh),
  head replicated. An encoder tree the logical table does not describe (an
  unexpected checkpoint layout) is replicated."""
  replicated = NamedSharding(mesh, P())
  is_spec = lambda x: isinstance(x, P)
  logical = bert.logical_axes(bert_cfg)
  logical = {k: logical[k] for k in params['encoder'] if k in logical}
  same = (jax.tree.structure(logical, is_leaf=is_spec) ==
          jax.tree.structure(params['encoder']))
  encoder = (sharding.param_shardings(logical, params['encoder'], mesh) if same
             else jax.tree.map(lambda _: replicated, params['encoder']))
  return {'encoder': encoder,
          'head': jax.tree.map(lambda _: replicated, params['head'])}


def _host_rows(n: int) -> slice:
  """This process's rows of a global batch of n (rows go in process order)."""
  per = n // jax.process_count()
  return slice(per * jax.process_index(), per * (jax.process_index() + 1))


def _gather(x) -> np.ndarray:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


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
  style = 'roberta' if family in bert.ROBERTA_FAMILIES else 'bert'
  train = glue_data.read_split(task, glue_data.TRAIN, data_dir, source)
  skipped = train.skipped
  if cfg.max_train_examples and len(train) > cfg.max_train_examples:
    pick = np.random.default_rng(seed).choice(len(train), cfg.max_train_examples,
                                              replace=False)
    train = train.take(np.sort(pick))
  if len(train) == 0:
    raise GlueError(f'{train.origin}: no training examples')
  encoded = {glue_data.TRAIN: glue_data.encode(train, tokenizer, cfg.max_len,
                                                     style)}
  for d in task.dev:
    dev = glue_data.read_split(task, d.name, data_dir, source)
    if len(dev) == 0:
      raise GlueError(f'{dev.origin}: no dev examples')
    encoded[d.name] = glue_data.encode(dev, tokenizer, cfg.max_len, style)
  top = max(int(e['input_ids'].max()) for e in encoded.values())
  if top >= vocab_size:
    raise GlueError(f'the tokenizer gives token id {top} but the model has '
                    f'{vocab_size} embeddings: tokenizer and model do not match')
  train_arrays = encoded.pop(glue_data.TRAIN)
  return TaskData(train_arrays, encoded, skipped, train)


def predict_logits(predict, params, rest, arrays: dict, batch_size: int, mesh,
                   buckets: Sequence[int] | None = None) -> np.ndarray:
  """[N, num_outputs] logits of every row of `arrays`, in their order, from
  the batches of `eval_plan` (buckets None: everything at full length)."""
  lengths = glue_data.lengths(arrays)
  buckets = buckets or (arrays['input_ids'].shape[1],)
  logits = None
  for batch in eval_plan(lengths, batch_size, buckets):
    host = _batch(arrays, batch.index, batch_size, batch.length)
    host = {k: v[_host_rows(batch_size)] for k, v in host.items()}
    out = _gather(predict(params, rest, sharding.global_batch(host, mesh)))
    if logits is None:
      logits = np.zeros((len(lengths),) + out.shape[1:], out.dtype)
    logits[batch.index] = out[:len(batch.index)]
  return logits


def evaluate(task: Task, predict, params, rest, dev: dict, batch_size: int,
             mesh, buckets: Sequence[int] | None = None) -> dict:
  """The task's metrics on each of its dev sets (keys as `task.metric_keys()`)."""
  out = {}
  for d in task.dev:
    arrays = dev[d.name]
    logits = predict_logits(predict, params, rest, arrays, batch_size, mesh,
                            buckets)
    preds = logits[:, 0] if task.is_regression else logits.argmax(axis=-1)
    for name, value in glue_metrics.compute(task.metrics, preds,
                                            arrays['labels']).items():
      out[name + d.suffix] = value
  return out


def _round_up(x: int, multiple: int) -> int:
  return -(-x // multiple) * multiple


class Compiled(NamedTuple):
  train_step: Callable     # (params, opt_state, rest, batch, key, step)
  predict: Callable        # (params, rest, batch) -> logits
  init_opt: Callable       # params -> opt_state
  params: dict             # shardings of the params tree
  rest: dict               # shardings of the untrained MLM head


def compile_steps(task: Task, bert_cfg: bert.BertConfig, cfg: FinetuneConfig,
                  template: dict, rest: dict, steps: int, mesh) -> Compiled:
  """The jitted, sharded train step, prediction and optimizer init; `template`
  is the params tree (arrays or shapes)."""
  replicated = NamedSharding(mesh, P())
  p_sh = param_shardings(bert_cfg, template, mesh)
  tx = optim.make(cfg.optim_config(), steps,
                  jax.tree.map(lambda _: False, template))
  o_sh = sharding.shardings_like_params(jax.eval_shape(tx.init, template), p_sh,
                                        template, mesh)
  rest_sh = jax.tree.map(lambda _: replicated, rest)
  batch_sh = sharding.batch_sharding(mesh)
  distill = ((cfg.kd_temperature, cfg.kd_alpha, cfg.kd_beta) if cfg.distill
             else None)
  step = jax.jit(
      functools.partial(train_step, bert_cfg, tx, task.is_regression,
                        cfg.head_dropout, distill=distill),
      in_shardings=(p_sh, o_sh, rest_sh, batch_sh, replicated, replicated),
      out_shardings=(p_sh, o_sh, replicated), donate_argnums=(0, 1))
  predict = jax.jit(functools.partial(predict_step, bert_cfg),
                    in_shardings=(p_sh, rest_sh, batch_sh), out_shardings=batch_sh)
  return Compiled(step, predict, jax.jit(tx.init, out_shardings=o_sh), p_sh,
                  rest_sh)


def check_settings(bert_cfg: bert.BertConfig, cfg: FinetuneConfig, mesh) -> None:
  divisor = sharding.batch_divisor(mesh)
  if cfg.batch_size % divisor:
    raise GlueError(f'batch_size={cfg.batch_size} must be a multiple of the '
                    f'{divisor} data-parallel devices')
  if cfg.max_len > bert_cfg.max_position_embeddings:
    raise GlueError(f'max_len={cfg.max_len} exceeds the model\'s '
                    f'{bert_cfg.max_position_embeddings} positions')
  bucket_lengths(cfg.max_len, cfg.length_buckets)    # one line if malformed


def fit(compiled: Compiled, params, opt_state, rest, arrays: dict,
        cfg: FinetuneConfig, steps: int, key, seed: int, mesh, bar):
  """`steps` train steps over `arrays` in the batches of `train_plan` (one
  shape, so one compile, per bucket); the final params and last loss."""
  lengths = glue_data.lengths(arrays)
  buckets = bucket_lengths(cfg.max_len, cfg.length_buckets)
  rows = _host_rows(cfg.batch_size)
  # On CPU, one step at a time: XLA's CPU collectives can deadlock when many
  # steps queue up on fake devices that share a small thread pool.
  sync = jax.default_backend() == 'cpu'
  loss = None
  with sharding.constraints(mesh):
    plan = train_plan(lengths, cfg.batch_size, steps, seed, buckets)
    for step, batch in enumerate(plan):
      host = _batch(arrays, batch.index, cfg.batch_size, batch.length)
      host = {k: v[rows] for k, v in host.items()}
      params, opt_state, loss = compiled.train_step(
          params, opt_state, rest, sharding.global_batch(host, mesh), key,
          np.int32(step))
      if sync:
        loss.block_until_ready()
      bar.update(1)
      if step % 50 == 0 or step == steps - 1:
        bar.set_postfix(loss=f'{float(loss):.4f}')
  return params, float(loss)


def finetune_seeds(task: Task, bert_cfg: bert.BertConfig, encoder_params: dict,
                   task_data: TaskData, cfg: FinetuneConfig,
                   seeds: Sequence[int], progress: bool = True,
                   keep_params: bool = False) -> list[dict]:
  """Fine-tune once per seed from the same encoder; per-seed dev results.

  Each seed draws its own head initialisation, data order and dropout. With
  `keep_params`, each result also holds its fine-tuned model under '_params'
  ({'encoder', 'head'}, on the host), which is not part of the JSON."""
  from tqdm.auto import tqdm

  mesh = _mesh(cfg)
  check_settings(bert_cfg, cfg, mesh)
  eval_batch = _round_up(cfg.eval_batch_size, sharding.batch_divisor(mesh))
  encoder, rest, pooler = heads.split_encoder_params(bert_cfg,
                                               jax.device_get(encoder_params))
  buckets = bucket_lengths(cfg.max_len, cfg.length_buckets)
  train_lengths = glue_data.lengths(task_data.train)
  steps = total_steps(train_lengths, cfg)
  eval_padding = eval_padding_fraction(task_data.dev, eval_batch, buckets)
  new_head = lambda key: heads.init_head(bert_cfg, task.num_outputs, key, pooler)
  template = {'encoder': encoder,
              'head': jax.eval_shape(new_head, jax.random.key(0))}
  compiled = compile_steps(task, bert_cfg, cfg, template, rest, steps, mesh)
  device_rest = jax.device_put(rest, compiled.rest)
  results = []
  for seed in seeds:
    key_head, key_dropout = jax.random.split(jax.random.key(seed))
    # Fresh buffers from host copies: the train step donates them.
    params = jax.device_put({'encoder': encoder,
                             'head': jax.device_get(new_head(key_head))},
                            compiled.params)
    opt_state = compiled.init_opt(params)
    with tqdm(total=steps, desc=f'{task.name} seed {seed}', leave=False,
              disable=not progress, dynamic_ncols=True) as bar:
      params, loss = fit(compiled, params, opt_state, device_rest,
                           task_data.train, cfg, steps, key_dropout, seed, mesh,
                           bar)
    with sharding.constraints(mesh):
      dev_metrics = evaluate(task, compiled.predict, params, device_rest,
                             task_data.dev, eval_batch, mesh, buckets)
    train_padding = padding_fraction(
        train_lengths, train_plan(train_lengths, cfg.batch_size, steps, seed,
                                  buckets), cfg.batch_size)
    results.append({'seed': int(seed), 'metrics': dev_metrics,
                    'score': glue_metrics.task_score(dev_metrics,
                                                     task.metric_keys()),
                    'final_loss': loss, 'steps': steps,
                    'padding_fraction': {'train': train_padding,
                                         'eval': eval_padding}})
    if keep_params:
      results[-1]['_params'] = jax.device_get(params)
  return results


def summarize(task: Task, per_seed: list[dict]) -> dict:
  """Median over seeds of each metric, and of the per-seed task score."""
  keys = task.metric_keys()
  return {'metrics': {k: float(np.median([r['metrics'][k] for r in per_seed]))
                      for k in keys},
          'score': float(np.median([r['score'] for r in per_seed]))}


def run_task(task, data_dir, bert_config: bert.BertConfig, encoder_params: dict,
             tokenizer, *, seeds: int = 1, epochs: float = 3.0,
             lr: float = 2e-5, batch_size: int = 32, max_len: int = 128,
             max_steps: int | None = None, seed: int = 0, source: str = 'tsv',
             progress: bool = True, previous: dict | None = None,
             keep_best: bool = False, teacher=None, transfer=None,
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
  row are computed once, before the seeds run. `transfer` (`glue.data.Examples`,
  labels unused) adds unlabelled rows that the teacher alone teaches.

  `keep_best` adds '_best': {'seed', 'params'}, the fine-tuned model of the
  median seed (`median_seed`) among the seeds run now, for saving; pop it
  before writing the result as JSON.
  """
  task = task if isinstance(task, Task) else get_task(task)
  if seeds < 1:
    raise GlueError(f'seeds={seeds}: at least one run is needed')
  if transfer is not None and teacher is None:
    raise GlueError('a transfer set is labelled by a teacher: give --teacher too')
  cfg = FinetuneConfig(learning_rate=lr, batch_size=batch_size, epochs=epochs,
                       max_len=max_len, max_steps=max_steps,
                       distill=teacher is not None, **overrides)
  kd.check_settings(cfg.kd_temperature, cfg.kd_alpha, cfg.kd_beta)
  bucket_lengths(cfg.max_len, cfg.length_buckets)  # malformed: fail before reading
  settings = cfg.settings()
  kept = stored_seeds(task, previous, settings, seed) if previous else []
  task_data = load_task_data(task, data_dir, tokenizer, cfg,
                             bert_config.vocab_size, source, seed,
                             bert_config.family)
  if teacher is not None:
    task_data = with_teacher(task_data, teacher, transfer, tokenizer, cfg,
                             bert_config)
  todo = [seed + i for i in range(len(kept), seeds)]
  ran = (finetune_seeds(task, bert_config, encoder_params, task_data, cfg, todo,
                        progress, keep_params=keep_best) if todo else [])
  models = {r['seed']: r.pop('_params') for r in ran if '_params' in r}
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
          'config': settings, **best}


def with_teacher(task_data: TaskData, teacher, transfer, tokenizer,
                 cfg: FinetuneConfig, bert_cfg: bert.BertConfig) -> TaskData:
  """The training rows with the teacher's logits ('teacher_logits') and
  'label_weights' (1 for labelled rows, 0 for the transfer set's)."""
  train = dict(task_data.train)
  n = len(train['labels'])
  train['teacher_logits'] = np.asarray(
      teacher(task_data.train_examples, glue_data.TRAIN), np.float32)
  train['label_weights'] = np.ones(n, np.float32)
  if transfer is not None:
    if len(transfer) == 0:
      raise GlueError('the transfer set is empty: make it again, or drop it')
    style = 'roberta' if bert_cfg.family in bert.ROBERTA_FAMILIES else 'bert'
    extra = glue_data.encode(transfer, tokenizer, cfg.max_len, style)
    extra['teacher_logits'] = np.asarray(teacher(transfer, 'transfer'),
                                         np.float32)
    extra['label_weights'] = np.zeros(len(transfer), np.float32)
    extra['labels'] = np.zeros_like(train['labels'], shape=(len(transfer),))
    train = {k: np.concatenate([train[k], extra[k]]) for k in train}
  if len(train['teacher_logits']) != len(train['labels']):
    raise GlueError(f'the teacher gave {len(train["teacher_logits"])} rows of '
                    f'logits for {len(train["labels"])} training examples')
  return dataclasses.replace(task_data, train=train)


def median_seed(per_seed: list[dict]) -> int:
  """The seed whose score is the median (the lower middle one of an even
  count; the first seed among equal scores)."""
  ranked = sorted(per_seed, key=lambda r: (r['score'], r['seed']))
  return int(ranked[(len(ranked) - 1) // 2]['seed'])


def stored_seeds(task: Task, previous: dict, settings: dict, seed: int) -> list:
  """The per-seed results of `previous` that a top-up keeps; refuses a result
  of another task, other settings or other seeds, naming what differs."""
  if previous.get('task') != task.name:
    raise GlueError(f'the stored result is for {previous.get("task")!r}, not '
                    f'{task.name}: it cannot be topped up with more seeds')
  as_json = lambda d: json.loads(json.dumps(d))
  was, now = as_json(previous.get('config', {})), as_json(settings)
  differ = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
  if differ:
    changes = ', '.join(f'{k} {was.get(k)!r} -> {now.get(k)!r}' for k in differ)
    raise GlueError(f'{task.name}: the stored seeds were run with other settings '
                    f'({changes}); top them up with the same settings, or remove '
                    f'the stored result to start over')
  kept = list(previous.get('per_seed', []))
  if [r.get('seed') for r in kept] != [seed + i for i in range(len(kept))]:
    raise GlueError(f'{task.name}: the stored seeds are '
                    f'{[r.get("seed") for r in kept]}, not {seed}, {seed + 1}, ...: '
                    f'top them up with the same --seed')
  return kept
