"""GLUE for one model, as a library: which tasks, the model and its tokenizer,
every task fine-tuned and evaluated (`evaluate`), the results written.

`python -m jaxdistil.glue` (`glue/__main__.py`) is the command over it; the
teacher and student of task distillation are set up by `glue.teacher`.
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


def load(path: str, tokenizer: str | None = None):
  """(`convert.Loaded`, tokenizer) of `path` (`convert.load_with_tokenizer`:
  `tokenizer` when given, else the model's own), errors as one `GlueError`
  line."""
  from jaxdistil.convert import load_with_tokenizer
  try:
    return load_with_tokenizer(path, tokenizer)
  except ValueError as e:   # ConvertError, TokenizerError: one-line messages
    raise GlueError(f'cannot load model {path!r}: '
                    f'{(str(e).splitlines() or [""])[0]}') from None


def load_tokenizer(name_or_dir: str):
  from jaxdistil.data import tokenizer
  try:
    return tokenizer.load(name_or_dir)
  except ValueError as e:
    raise GlueError(str(e).splitlines()[0]) from None


def _one_task(flag: str, why: str, tasks) -> None:
  if len(tasks) != 1:
    raise GlueError(f'{flag} {why}: give one --task, not {len(tasks)} '
                    f'({", ".join(t.name for t in tasks)})')


def check_outputs(args, tasks) -> None:
  """--save and --eval_only, refused before any work where they cannot run."""
  if getattr(args, 'teacher', None):
    from jaxdistil.glue import kd
    _one_task('--teacher', 'is fine-tuned on one task', tasks)
    if getattr(args, 'eval_only', False):
      raise GlueError('--teacher with --eval_only: nothing is trained; score the '
                      'teacher itself with --model=TEACHER --eval_only')
    from jaxdistil.glue import defaults
    given = {k: getattr(args, k) for k in ('kd_temperature', 'kd_alpha')}
    kd.check_settings(*(defaults.DISTILL[k] if v is None else v
                        for k, v in given.items()), args.kd_beta)
  if (getattr(args, 'kd_intermediate_steps', 0)
      and not getattr(args, 'kd_online', False)):
    raise GlueError('--kd_intermediate_steps matches the teacher\'s hidden '
                    'states inside the step: give --kd_online too')
  if getattr(args, 'transfer_set', None) and not getattr(args, 'teacher', None):
    raise GlueError('--transfer_set is labelled by a teacher: give --teacher too')
  save = getattr(args, 'save', None)
  if save:
    from jaxdistil import fs
    _one_task('--save', 'keeps one fine-tuned model', tasks)
    if getattr(args, 'eval_only', False):
      raise GlueError('--save with --eval_only: nothing is trained to save; '
                      'export the model with `python -m jaxdistil.convert export`')
    fs.refuse_nonempty(os.path.abspath(os.path.expanduser(save)), '--save',
                       error=GlueError)


def _model(args, load_model: Callable | None):
  """(BertConfig, params, tokenizer, `Loaded` or None) of --model: its own
  tokenizer or --tokenizer, and --student_layers drawn from it (a new model,
  without a head of its own)."""
  from jaxdistil.glue import teacher as teacher_lib
  loaded = None
  if load_model is None:
    loaded, tokenizer = load(args.model, args.tokenizer)
    bert_cfg, params = loaded.config, loaded.params_with_pooler()
  else:                        # (config, params, tokenizer): tests, embedders
    bert_cfg, params, tokenizer = load_model(args.model)
    if args.tokenizer:
      tokenizer = load_tokenizer(args.tokenizer)
    if tokenizer is None:
      raise GlueError(f'{args.model} has no tokenizer files (vocab.txt or '
                      f'tokenizer.json): pass --tokenizer=DIR')
  if getattr(args, 'student_layers', None):
    bert_cfg, params = teacher_lib.student_of(bert_cfg, params,
                                              args.student_layers, args.model)
    if loaded is not None:
      loaded.head = loaded.classifier = None      # a new model: no head of its own
  return bert_cfg, params, tokenizer, loaded


def _teaching(args, task, tokenizer, bert_cfg):
  """(teacher, the online teacher, the transfer set) that --teacher,
  --kd_online and --transfer_set ask for (each None when not asked)."""
  from jaxdistil.glue import teacher as teacher_lib
  teacher = transfer = online = None
  if getattr(args, 'teacher', None):
    teacher = teacher_lib.make_teacher(args.teacher, task, args.max_len,
                                       getattr(args, 'workdir', None))
    if getattr(args, 'kd_online', False):
      # The step runs the teacher; its cached-mode logits still check it.
      online = teacher.online(tokenizer, bert_cfg.family, args.max_len)
      if getattr(args, 'kd_intermediate_steps', 0):
        from jaxdistil.glue.stage1 import check_intermediate
        check_intermediate(bert_cfg, online[0])
  if getattr(args, 'transfer_set', None):
    from jaxdistil.glue import augment
    transfer = augment.read_transfer_set(args.transfer_set)
  return teacher, online, transfer


def _task_result(args, task, source, model, teaching) -> dict:
  """One task's result: scored by the model's own head (--eval_only) or
  fine-tuned over seeds, the median seed saved with --save; its score printed
  (stderr)."""
  from jaxdistil.glue import finetune   # jax and the model: import late
  from jaxdistil.glue import teacher as teacher_lib
  bert_cfg, params, tokenizer, loaded = model
  teacher, online, transfer = teaching
  if getattr(args, 'eval_only', False):
    from jaxdistil.glue import scoring
    result = scoring.score_classifier(
        task, args.data_dir, bert_cfg, params, loaded.head, loaded.classifier,
        tokenizer, max_len=args.max_len, source=source, where=args.model,
        length_buckets=args.length_buckets)
  else:
    result = finetune.run_task(
        task, args.data_dir, bert_cfg, params, tokenizer, seeds=args.seeds,
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        max_len=args.max_len, max_steps=args.max_steps, seed=args.seed,
        source=source, progress=args.progress,
        max_train_examples=args.max_train_examples,
        length_buckets=args.length_buckets,
        keep_best=bool(getattr(args, 'save', None)), teacher=teacher,
        transfer=transfer, online_teacher=online, **teacher_lib.kd_overrides(args),
        **resumable(args, task))
  best = result.pop('_best', None)
  if best is not None:
    result['saved'] = save_classifier(args.save, task, bert_cfg, best, loaded,
                                      args.tokenizer)
  padding = result['padding_fraction']
  train_padding = ('no training' if padding['train'] is None
                   else f'{padding["train"]:.0%} of train tokens')
  print(f'{task.name}: {result["score"]:.2f} {result["metrics"]} (padding: '
        f'{train_padding}, {padding["eval"]:.0%} of dev)', file=sys.stderr,
        flush=True)
  return result


def evaluate(args, load_model: Callable | None = None) -> dict:
  """Every task of `args` (the command's flags) for `args.model`: the summary
  with per-task results, the macro-score and the table-1 row.

  With `args.eval_only`, each task is scored by the model's own classifier
  head without training; with `args.save` (one task), the median seed's
  fine-tuned model is written there as a Hugging Face classifier."""
  tasks, source = resolve_tasks(args.task, args.data_dir, args.source)
  check_outputs(args, tasks)
  model = _model(args, load_model)
  bert_cfg, loaded = model[0], model[3]
  from jaxdistil.glue import defaults
  notice = defaults.fill(args, getattr(bert_cfg, 'hidden_size', None),
                         bool(getattr(args, 'teacher', None)))
  eval_only = getattr(args, 'eval_only', False)
  if notice and not eval_only:                          # a notice: stdout
    print(f'jaxdistil.glue: {notice}', flush=True)
  if eval_only and getattr(loaded, 'head', None) is None:
    raise GlueError(f'--eval_only scores a model\'s own classifier head, and '
                    f'{args.model} has none: fine-tune it (drop --eval_only)')
  teaching = _teaching(args, tasks[0], model[2], bert_cfg)
  results = {task.name: _task_result(args, task, source, model, teaching)
             for task in tasks}
  name = args.name or os.path.basename(os.path.normpath(args.model))
  scores = report.task_scores(results)
  transfer = teaching[2]
  return {'name': name, 'model': args.model, 'source': source,
          'data_dir': args.data_dir, 'seeds': args.seeds,
          'score': glue_metrics.macro_score(scores), 'task_scores': scores,
          'tasks_missing': [t for t in TABLE1_ORDER if scores[t] is None],
          'tasks': results,
          'table1_row': report.table1_row(name, results),
          'provenance': provenance(args, teaching[0],
                                   None if transfer is None else transfer.meta)}


def provenance(args, teacher, transfer_meta: dict | None) -> dict:
  """What a result was made from, beyond its settings: the model (and the
  layers drawn from it), the teacher (its path and the sha256 of its files),
  the transfer set (its path, task, source data and recipe) and how the
  teacher ran."""
  absolute = lambda p: os.path.abspath(os.path.expanduser(p)) if p else None
  layers = getattr(args, 'student_layers', None)
  out = {'model': absolute(args.model), 'tokenizer': args.tokenizer,
         'student_layers': [int(i) for i in layers] if layers else None,
         'teacher': None, 'transfer_set': None}
  if teacher is not None:
    out['teacher'] = {'path': absolute(args.teacher),
                      'fingerprint': teacher.fingerprint(),
                      'kd_online': bool(getattr(args, 'kd_online', False)),
                      'kd_intermediate_steps':
                          int(getattr(args, 'kd_intermediate_steps', 0) or 0)}
  if transfer_meta is not None:
    keep = ('task', 'source', 'examples', 'copies', 'p', 'top_k', 'seed',
            'format', 'mlm')
    out['transfer_set'] = {'path': absolute(args.transfer_set),
                           **{k: transfer_meta.get(k) for k in keep}}
  return out


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
