"""GLUE for one model, as a library: which tasks, the model and its tokenizer,
every task fine-tuned and evaluated (`evaluate`), the results written.

`python -m jaxdistil.glue` (`glue/__main__.py`) is the command over it;
`ablate` and `replicate` call it directly.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Callable

from jaxdistil.glue import data as glue_data
from jaxdistil.glue import metrics as glue_metrics
from jaxdistil.glue import report
from jaxdistil.glue.tasks import GlueError, TASKS, TABLE1_ORDER, get as get_task


def resolve_tasks(task_arg: str, data_dir: str | None, source: str):
  """(tasks, source) from --task/--source; checks the files before any work."""
  arg = task_arg.strip()
  if arg.startswith(glue_data.TFDS_PREFIX):
    arg, source = arg[len(glue_data.TFDS_PREFIX):], 'tfds'
  if arg.lower() == 'all':
    candidates = [TASKS[n] for n in TABLE1_ORDER]
    if source == 'tfds':
      tasks = glue_data.tfds_tasks_present(data_dir, candidates)
    else:
      if not data_dir or not os.path.isdir(data_dir):
        raise GlueError(f'--data_dir={data_dir!r} is not a folder: give the '
                        f'glue_data folder holding CoLA/, SST-2/, ...')
      tasks = glue_data.tasks_present(data_dir, candidates)
    if not tasks:
      raise GlueError(f'no GLUE task found in {data_dir}: expected folders like '
                      f'{os.path.join(data_dir or ".", "SST-2")}/{{train,dev}}.tsv'
                      if source == 'tsv' else
                      f'no built TFDS glue/* dataset in {data_dir}')
    return tasks, source
  tasks = [get_task(a) for a in arg.split(',') if a.strip()]
  if not tasks:
    raise GlueError('--task is empty: give a task name or all')
  if source == 'tsv':
    if not data_dir:
      raise GlueError('--data_dir is required to read glue_data TSV files')
    for t in tasks:
      glue_data.check_files(t, data_dir)
  return tasks, source


def load_loaded(path: str):
  """`jaxdistil.convert.load_model(path)` (a `convert.Loaded`), its errors
  as one-line `GlueError`s."""
  try:
    from jaxdistil.convert import load_model
  except ImportError as e:
    raise GlueError(f'cannot load {path!r}: jaxdistil.convert.load_model is not '
                    f'available ({e})') from None
  try:
    # The MLM head is not used by GLUE: a BertModel checkpoint without one is fine.
    return load_model(path, init_missing_head=True)
  except ValueError as e:   # ConvertError, TokenizerError: one-line messages
    raise GlueError(f'cannot load model {path!r}: '
                    f'{(str(e).splitlines() or [""])[0]}') from None


def default_load_model(path: str):
  """`jaxdistil.convert.load_model(path)`, unpacked by `unpack_loaded`."""
  return unpack_loaded(load_loaded(path))


def unpack_loaded(loaded):
  """(BertConfig, params with the pooler if any, tokenizer or None) from what
  the loader returns: that triple already, or a `convert.Loaded` (config,
  params, pooler, tokenizer_dir)."""
  if isinstance(loaded, tuple):
    return loaded
  params = dict(loaded.params)
  if getattr(loaded, 'pooler', None) is not None:
    params['pooler'] = loaded.pooler
  tok_dir = getattr(loaded, 'tokenizer_dir', None)
  return loaded.config, params, load_tokenizer(tok_dir) if tok_dir else None


def load_tokenizer(name_or_dir: str):
  from jaxdistil.data import tokenizer
  try:
    return tokenizer.load(name_or_dir)
  except ValueError as e:
    raise GlueError(str(e).splitlines()[0]) from None


def check_outputs(args, tasks) -> None:
  """--save and --eval_only, refused before any work where they cannot run."""
  if getattr(args, 'teacher', None):
    from jaxdistil.glue import kd
    if len(tasks) != 1:
      raise GlueError(f'--teacher is fine-tuned on one task: give one --task, '
                      f'not {len(tasks)} ({", ".join(t.name for t in tasks)})')
    if getattr(args, 'eval_only', False):
      raise GlueError('--teacher with --eval_only: nothing is trained; score the '
                      'teacher itself with --model=TEACHER --eval_only')
    kd.check_settings(args.kd_temperature, args.kd_alpha, args.kd_beta)
  if getattr(args, 'transfer_set', None) and not getattr(args, 'teacher', None):
    raise GlueError('--transfer_set is labelled by a teacher: give --teacher too')
  save = getattr(args, 'save', None)
  if save:
    from jaxdistil import fs
    if len(tasks) != 1:
      raise GlueError(f'--save keeps one fine-tuned model: give one --task, not '
                      f'{len(tasks)} ({", ".join(t.name for t in tasks)})')
    if getattr(args, 'eval_only', False):
      raise GlueError('--save with --eval_only: nothing is trained to save; '
                      'export the model with `python -m jaxdistil.convert export`')
    fs.refuse_nonempty(os.path.abspath(os.path.expanduser(save)), '--save',
                       error=GlueError)


def evaluate(args, load_model: Callable | None = None) -> dict:
  """Every task of `args` (the command's flags) for `args.model`: the summary
  with per-task results, the macro-score and the table-1 row.

  With `args.eval_only`, each task is scored by the model's own classifier
  head without training; with `args.save` (one task), the median seed's
  fine-tuned model is written there as a Hugging Face classifier."""
  tasks, source = resolve_tasks(args.task, args.data_dir, args.source)
  check_outputs(args, tasks)
  from jaxdistil.glue import finetune   # jax and the model: import late
  loaded = None
  if load_model is None:
    loaded = load_loaded(args.model)
    bert_cfg, params, tokenizer = unpack_loaded(loaded)
  else:
    bert_cfg, params, tokenizer = load_model(args.model)
  if getattr(args, 'student_layers', None):
    bert_cfg, params = student_of(bert_cfg, params, args.student_layers,
                                  args.model)
    if loaded is not None:
      loaded.head = loaded.classifier = None      # a new model: no head of its own
  if args.tokenizer:
    tokenizer = load_tokenizer(args.tokenizer)
  if tokenizer is None:
    raise GlueError(f'{args.model} has no tokenizer files (vocab.txt or '
                    f'tokenizer.json): pass --tokenizer=DIR')
  eval_only = getattr(args, 'eval_only', False)
  if eval_only and getattr(loaded, 'head', None) is None:
    raise GlueError(f'--eval_only scores a model\'s own classifier head, and '
                    f'{args.model} has none: fine-tune it (drop --eval_only)')
  teacher = transfer = online = None
  if getattr(args, 'teacher', None):
    teacher = make_teacher(args.teacher, tasks[0], args.max_len,
                           getattr(args, 'workdir', None))
    if getattr(args, 'kd_online', False):
      online = teacher.online(tokenizer, bert_cfg.family, args.max_len)
      teacher = None
  if getattr(args, 'transfer_set', None):
    from jaxdistil.glue import augment
    transfer = augment.read_transfer_set(args.transfer_set).examples
  results = {}
  for task in tasks:
    if eval_only:
      from jaxdistil.glue import scoring
      results[task.name] = scoring.score_classifier(
          task, args.data_dir, bert_cfg, params, loaded.head, loaded.classifier,
          tokenizer, max_len=args.max_len, source=source, where=args.model,
          length_buckets=not args.no_length_buckets)
    else:
      results[task.name] = finetune.run_task(
          task, args.data_dir, bert_cfg, params, tokenizer, seeds=args.seeds,
          epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
          max_len=args.max_len, max_steps=args.max_steps, seed=args.seed,
          source=source, progress=not args.no_progress,
          max_train_examples=args.max_train_examples,
          length_buckets=not args.no_length_buckets,
          keep_best=bool(getattr(args, 'save', None)), teacher=teacher,
          transfer=transfer, online_teacher=online, **kd_overrides(args),
          **resumable(args, task))
    best = results[task.name].pop('_best', None)
    if best is not None:
      results[task.name]['saved'] = save_classifier(
          args.save, task, bert_cfg, best, loaded, args.tokenizer)
    padding = results[task.name]['padding_fraction']
    train_padding = ('no training' if padding['train'] is None
                     else f'{padding["train"]:.0%} of train tokens')
    print(f'{task.name}: {results[task.name]["score"]:.2f} '
          f'{results[task.name]["metrics"]} (padding: {train_padding}, '
          f'{padding["eval"]:.0%} of dev)', file=sys.stderr, flush=True)
  name = args.name or os.path.basename(os.path.normpath(args.model))
  scores = report.task_scores(results)
  return {'name': name, 'model': args.model, 'source': source,
          'data_dir': args.data_dir, 'seeds': args.seeds,
          'score': glue_metrics.macro_score(scores), 'task_scores': scores,
          'tasks_missing': [t for t in TABLE1_ORDER if scores[t] is None],
          'tasks': results,
          'table1_row': report.table1_row(name, results)}


def student_of(bert_cfg, params: dict, layers, where: str):
  """A smaller model drawn from `params` by `student_init`'s rule (the layers
  named, DistilBERT's layout, token type 0 folded into the positions), with
  no general distillation: the paper's initialisation, fine-tuned directly."""
  from jaxdistil.models import student_init
  try:
    layer_map = tuple(int(i) for i in layers)
    cfg = student_init.student_config(bert_cfg, len(layer_map))
    student = student_init.init_from_teacher(
        params, bert_cfg, cfg, layer_map,
        fold_token_type=bool(bert_cfg.type_vocab_size))
  except (TypeError, ValueError) as e:
    raise GlueError(f'--student_layers={",".join(map(str, layers))} for '
                    f'{where}: {str(e).splitlines()[0]}') from None
  return cfg, student


def resumable(args, task) -> dict:
  """run_task's resume arguments: with --workdir, the task's run folder
  there, checkpointed every --checkpoint_every steps."""
  workdir = getattr(args, 'workdir', None)
  if not workdir:
    return {}
  identity = {'model': os.path.abspath(os.path.expanduser(args.model)),
              'teacher': (os.path.abspath(os.path.expanduser(args.teacher))
                          if getattr(args, 'teacher', None) else None),
              'student_layers': getattr(args, 'student_layers', None),
              'transfer_set': getattr(args, 'transfer_set', None),
              'kd_online': bool(getattr(args, 'kd_online', False)),
              'tokenizer': args.tokenizer}
  return {'run_dir': os.path.join(workdir, 'runs', task.name),
          'run_identity': identity,
          'checkpoint_every': getattr(args, 'checkpoint_every', 0) or 0}


def kd_overrides(args) -> dict:
  if not getattr(args, 'teacher', None):
    return {}
  return {'kd_temperature': args.kd_temperature, 'kd_alpha': args.kd_alpha,
          'kd_beta': args.kd_beta,
          'kd_intermediate_steps': getattr(args, 'kd_intermediate_steps', 0)}


def make_teacher(path: str, task, max_len: int, workdir: str | None):
  """`teacher(examples, split) -> logits` for `run_task`: the fine-tuned
  classifier at `path`, its head in `task`'s class order, on its own
  tokenizer (teacher and student may tokenize differently). With a
  `workdir`, the logits are cached there (`glue.teacher_cache`), keyed by the
  teacher and the data; without one they are computed once per run."""
  from jaxdistil.glue import finetune, scoring, teacher_cache
  loaded = load_loaded(path)
  if loaded.head is None:
    raise GlueError(f'--teacher={path} has no classifier head: give a model '
                    f'fine-tuned on {task.name} (glue --save, or an HF '
                    f'*ForSequenceClassification)')
  head, notice = scoring.task_head(task, loaded.head, loaded.classifier, path)
  if notice:
    print(f'jaxdistil.glue: notice: {notice}', flush=True)
  if not loaded.tokenizer_dir:
    raise GlueError(f'--teacher={path} has no tokenizer files: the teacher '
                    f'tokenizes the text itself')
  tok = load_tokenizer(loaded.tokenizer_dir)
  family = loaded.config.family
  style = 'roberta' if family in ('roberta', 'xlm-roberta') else 'bert'
  cfg = finetune.FinetuneConfig(max_len=min(max_len,
                                            loaded.config.max_position_embeddings))
  predictor = []
  fingerprint = []

  def compute(examples):
    if not predictor:
      predictor.append(scoring.Predictor(loaded.config, loaded.params, head, cfg))
    return predictor[0].logits(glue_data.encode(examples, tok, cfg.max_len, style))

  def teacher(examples, split: str):
    if not workdir:
      return compute(examples)
    if not fingerprint:
      fingerprint.append(teacher_cache.fingerprint_teacher(
          path if os.path.isdir(path) else loaded))
    data = teacher_cache.fingerprint_examples(examples, cfg.max_len, tok, style)
    return teacher_cache.load_or_compute(
        os.path.join(workdir, 'teacher_logits'), task.name, split,
        fingerprint[0], data, lambda: compute(examples))

  def online(student_tokenizer, student_family: str, max_len: int):
    """(config, {'encoder', 'head'}, rest) for `run_task(online_teacher=)`:
    only where the teacher would read the student's own tokens."""
    from jaxdistil.data import tokenizer as tokenizer_lib
    roberta = ('roberta', 'xlm-roberta')
    same = (tokenizer_lib.fingerprint(tok) ==
            tokenizer_lib.fingerprint(student_tokenizer)
            and (family in roberta) == (student_family in roberta))
    if not same:
      raise GlueError(f'--kd_online runs the teacher on the student\'s tokens, '
                      f'but {path} has another tokenizer: drop --kd_online (the '
                      f'cached mode tokenizes the text for each)')
    if max_len > loaded.config.max_position_embeddings:
      raise GlueError(f'--max_len={max_len} exceeds the teacher\'s '
                      f'{loaded.config.max_position_embeddings} positions')
    from jaxdistil.glue import heads
    encoder, rest, _ = heads.split_encoder_params(loaded.config, loaded.params)
    return loaded.config, {'encoder': encoder, 'head': head}, rest

  teacher.online = online
  return teacher


def save_classifier(output: str, task, bert_cfg, best: dict, loaded,
                    tokenizer_dir: str | None) -> dict:
  """Write the fine-tuned model of `best` ({'seed', 'params'}) as a Hugging
  Face `*ForSequenceClassification` folder with the task's label names."""
  from jaxdistil.convert import export
  from jaxdistil.convert.classifier import ClassifierInfo, REGRESSION, SINGLE_LABEL
  from jaxdistil.convert.hf_files import ConvertError
  from jaxdistil.glue import labels
  info = ClassifierInfo(labels.label_names(task),
                        REGRESSION if task.is_regression else SINGLE_LABEL,
                        task.name)
  tok = tokenizer_dir or getattr(loaded, 'tokenizer_dir', None)
  try:
    layout = export(bert_cfg, best['params']['encoder'], output,
                    tokenizer_dir=tok, head=best['params']['head'],
                    classifier=info)
  except ConvertError as e:
    raise GlueError(f'cannot save the model to {output}: {e}') from None
  print(f'jaxdistil.glue: saved seed {best["seed"]} (the median score) to '
        f'{output} ({layout} classifier)', file=sys.stderr, flush=True)
  return {'path': output, 'seed': best['seed'], 'layout': layout}


def write_outputs(summary: dict, output: str | None) -> str:
  """The markdown table; written with the JSON when `output` is given."""
  table = report.table1({summary['name']: summary['tasks']})
  if output:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, 'w') as f:
      json.dump(summary, f, indent=2, default=float)
      f.write('\n')
    with open(os.path.splitext(output)[0] + '.md', 'w') as f:
      f.write(table + '\n')
  return table
