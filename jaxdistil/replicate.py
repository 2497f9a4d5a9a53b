"""`python -m jaxdistil.replicate`: the paper's tables 1 and 4 from one command.

    python -m jaxdistil.replicate --teacher=DIR --workdir=DIR --config=replicate.py:small \
        --corpus='../shared/data/corpus/wikipedia/wiki_*,../shared/data/corpus/gutenberg/*.txt' \
        --glue_data=../shared/data/glue --results=results/small

Stages, each skipped when its result is there (rerun the same command to resume):

  import   the teacher (an HF directory or hub id, or a jaxdistil model) into
           WORKDIR/teacher_import; a bare encoder gets a fresh MLM head
  data     `prepare` of --corpus with the teacher's tokenizer (or --data)
  head     teacher-free MLM training of the whole teacher, WORKDIR/teacher:
           the adapted model is the teacher of every later stage (--nohead
           when the teacher's head is already trained)
  distil   each variant (`configs/replicate.py`: full, no_ce, no_cos, no_mlm,
           random_init, and the MLM-only baseline) in WORKDIR/students/NAME
  glue     the teacher and every student fine-tuned on the plan's GLUE tasks
  report   tables 1 and 4, shaped like the paper's, and the held-out table

What is kept lives under --results (default WORKDIR/results), small enough to
commit (`replicate_results`): per stage a JSON with the numbers, the command,
the steps, tokens and wall time, and the machine (CPU model, measured matmul
rate); each run's `metrics.jsonl` and `config.json` under runs/NAME; per model
and GLUE task a JSON; and tables.md (`replicate_tables`). A stage is done when
its JSON is there. Checkpoints stay in WORKDIR: a later session on a fresh
machine (no WORKDIR) retrains only the models that a pending stage needs, the
teacher's head first.

Over 300 lines on purpose: one experiment, its checks and its stages in the
order they run, so that it reads as the recipe it is.
"""

from __future__ import annotations

from jaxdistil import host_memory

if __name__ == '__main__':
  host_memory.keep_freed_memory()     # before jax starts its threads

import json
import os
import sys
import time

from jaxdistil import ablate
from jaxdistil import workdir as workdir_layout
from jaxdistil.replicate_results import Results, keep_run, machine, run_summary
from jaxdistil.replicate_tables import tables

CONFIG = 'replicate.py'                # a shipped config (config_lib.shipped)
# Old spellings still read, with a notice, for a release.
DEPRECATED = {'--no_head': '--nohead', '--no_progress': '--noprogress'}


class ReplicateError(ValueError):
  """One line naming what cannot go on and what to do."""


# ----------------------------------------------------------------------------
# The plan and its inputs, checked before any work

def looks_like_path(name: str) -> bool:
  return (os.sep in name or name.startswith('.') or name.startswith('~')
          or os.path.exists(name))


def check_teacher(teacher: str) -> None:
  if looks_like_path(teacher) and not os.path.isdir(os.path.expanduser(teacher)):
    raise ReplicateError(f'--teacher={teacher!r}: no such directory; give a '
                         f'Hugging Face model directory, a jaxdistil model or a '
                         f'hub id')


def has_trained_head(teacher: str) -> bool:
  """Whether `teacher` carries a trained masked-LM head (read from names and
  descriptions only, no weights)."""
  from jaxdistil.convert import model_dir
  from jaxdistil.convert.hf_files import Tensors, resolve
  path = os.path.expanduser(teacher)
  if os.path.isfile(os.path.join(path, model_dir.MODEL_FILE)):
    with open(os.path.join(path, model_dir.MODEL_FILE)) as f:
      return not json.load(f).get('fresh_head', False)
  if workdir_layout.is_workdir(path):
    return True
  names = Tensors(resolve(teacher)).names()
  return any(k in n for n in names
             for k in ('cls.predictions', 'vocab_transform', 'vocab_projector'))


def check_glue(plan, glue_data: str):
  from jaxdistil.glue import run as glue_run
  from jaxdistil.glue.tasks import GlueError
  if not glue_data or not os.path.isdir(glue_data):
    raise ReplicateError(f'--glue_data={glue_data!r} is not a folder: give the '
                         f'glue_data folder holding {", ".join(plan.glue.tasks)}')
  try:
    tasks, _ = glue_run.resolve_tasks(','.join(plan.glue.tasks), glue_data, 'tsv')
  except GlueError as e:
    raise ReplicateError(f'GLUE data in {glue_data} lacks a task the tables '
                         f'need: {e}') from None
  return tasks


# ----------------------------------------------------------------------------
# The stages

def log(msg: str) -> None:
  print(f'jaxdistil.replicate: {msg}', file=sys.stderr, flush=True)


def import_teacher(teacher: str, output: str) -> str:
  """The teacher as a jaxdistil model directory (a fresh head when it has none)."""
  from jaxdistil.convert import model_dir
  from jaxdistil.convert.hf_in import import_hf
  if os.path.isfile(os.path.join(output, model_dir.MODEL_FILE)):
    return output
  path = os.path.expanduser(teacher)
  if (os.path.isfile(os.path.join(path, model_dir.MODEL_FILE))
      or workdir_layout.is_workdir(path)):
    return path                      # already ours
  log(f'import: {teacher} -> {output}')
  m = import_hf(teacher, init_missing_head=True)
  model_dir.save_model(output, m.config, m.params, m.layout, source=teacher,
                       tokenizer_dir=m.tokenizer_dir, pooler=m.pooler,
                       fresh_head=m.fresh_head)
  return output


def prepare_data(args, plan, tokenizer: str, workdir: str) -> str:
  if args.data:
    return args.data
  if not args.corpus:
    raise ReplicateError('give --data=DIR (made by python -m jaxdistil.prepare) or '
                         '--corpus=GLOBS to prepare one with the teacher\'s '
                         'tokenizer')
  from jaxdistil.data import corpus
  output = os.path.join(workdir, 'data')
  corpus.prepare(args.corpus.split(','), tokenizer, plan.distil.max_len, output,
                  shard_size=plan.shard_size, progress_bar=args.progress)
  return output


def train_stage(results: Results, name: str, config, workdir: str, command: str,
                extra: dict | None = None) -> dict:
  """Train (or resume) one run; record its summary as results/NAME.json."""
  from jaxdistil import train
  log(f'{name}: training in {workdir}')
  start = time.perf_counter()
  out = train.train(config, workdir)
  wall = time.perf_counter() - start
  if out['step'] != config.total_steps:     # stopped early (SIGTERM): no result
    raise ReplicateError(
        f'{name}: training stopped at step {out["step"]} of {config.total_steps}'
        f'{" (SIGTERM)" if out.get("preempted") else ""}; nothing was recorded: '
        f'rerun the same command to resume from the checkpoint')
  summary = dict(run_summary(workdir), name=name, workdir=workdir,
                 command=command, machine=machine(),
                 wall_seconds_this_session=round(wall, 1),
                 batch=f'{config.batch_size} rows x {config.max_len} tokens',
                 **(extra or {}))
  keep_run(results, name, workdir)
  return summary


def head_stage(results: Results, plan, imported: str, data: str, workdir: str,
               command: str) -> None:
  """The teacher's MLM head (and a gentle adaptation of its encoder)."""
  from jaxdistil.convert import load_model
  shape = load_model(imported).config
  c = plan.head.copy_and_resolve_references()
  c.teacher, c.data = imported, data
  c.model.student.num_layers = shape.num_layers
  c.student_init.layer_map = ()
  c.student_init.fold_token_type = bool(shape.type_vocab_size)
  summary = train_stage(results, 'teacher', c, workdir, command)
  built = (results.get('teacher.json') or {}).get('builds', [])
  summary['builds'] = built + [{k: summary[k] for k in (
      'heldout', 'machine', 'wall_seconds_this_session')}]
  if built:
    log(f'head: the teacher was rebuilt here (held-out MLM accuracy '
        f'{summary["heldout"].get("eval/mlm_accuracy")} now, '
        f'{built[0]["heldout"].get("eval/mlm_accuracy")} first)')
  results.put(summary, 'teacher.json')


def glue_stage(results: Results, plan, name: str, model_path: str, tasks,
               glue_data: str, seeds: int, progress: bool) -> None:
  from jaxdistil.convert import load_with_tokenizer
  from jaxdistil.glue import finetune
  from jaxdistil.glue.tasks import GlueError
  pending = [t for t in tasks if results.seeds_stored(name, t.name) < seeds]
  if not pending:
    return
  loaded, tokenizer = load_with_tokenizer(model_path, flag=None)
  bert_cfg, params = loaded.config, loaded.params_with_pooler()
  g = plan.glue
  for task in pending:
    previous = results.get('glue', name, f'{task.name}.json')
    have = len(previous['per_seed']) if previous else 0
    log(f'glue: {name} {task.name} ({seeds} seed(s)'
        + (f', {have} stored: topping up)' if have else ')'))
    start = time.perf_counter()
    try:
      out = finetune.run_task(
          task, glue_data, bert_cfg, params, tokenizer, seeds=seeds,
          epochs=g.epochs, lr=g.learning_rate, batch_size=g.batch_size,
          max_len=g.max_len, max_train_examples=g.max_train_examples or None,
          length_buckets=g.length_buckets, progress=progress, previous=previous)
    except GlueError as e:
      if previous is None:
        raise
      raise ReplicateError(f'{results.path("glue", name, task.name + ".json")}: '
                           f'{e}') from None
    wall = round(time.perf_counter() - start, 1)
    out.update(model=name, machine=machine(),
               wall_seconds=round(wall + (previous or {}).get('wall_seconds', 0), 1))
    if previous:   # each session's share of the wall time, and its machine
      out['sessions'] = previous.get('sessions', [
          {'seeds': have, 'wall_seconds': previous.get('wall_seconds'),
           'machine': previous.get('machine')}]) + [
          {'seeds': seeds - have, 'wall_seconds': wall, 'machine': out['machine']}]
    results.put(out, 'glue', name, f'{task.name}.json')
    log(f'glue: {name} {task.name}: {out["score"]:.2f}')


def run(args) -> dict:
  plan = args.config
  check_teacher(args.teacher)
  tasks = check_glue(plan, args.glue_data)
  if args.data and not os.path.isfile(os.path.join(args.data, 'metadata.json')):
    raise ReplicateError(f'--data={args.data!r} is not a directory made by '
                         f'python -m jaxdistil.prepare (no metadata.json)')
  if not args.head and not has_trained_head(args.teacher):
    raise ReplicateError(f'{args.teacher} has no trained masked-LM head (a bare '
                         f'encoder such as BertModel), so it cannot be a teacher '
                         f'as it is: drop --nohead and replicate trains one')
  variants = list(plan.variants)
  results = Results(args.results or os.path.join(args.workdir, 'results'))
  command = 'python -m jaxdistil.replicate ' + ' '.join(args.argv)
  os.makedirs(args.workdir, exist_ok=True)

  # What is still to do decides which models must exist on this machine.
  glue_seeds = lambda name: (plan.glue.seeds_table1 if name in ('teacher', 'full')
                             else plan.glue.seeds_other)
  glue_pending = lambda name: any(
      results.seeds_stored(name, t.name) < glue_seeds(name) for t in tasks)
  distil_pending = [v for v in variants if results.get('distil', f'{v}.json') is None
                    or (glue_pending(v) and not workdir_layout.is_done(
                        os.path.join(args.workdir, 'students', v)))]
  needs_teacher = bool(distil_pending) or glue_pending('teacher')

  # ---- import, data, head ---------------------------------------------------
  teacher = args.teacher
  if needs_teacher:
    imported = import_teacher(args.teacher, os.path.join(args.workdir,
                                                         'teacher_import'))
    data = prepare_data(args, plan, imported, args.workdir)
    teacher = imported
    if args.head:
      teacher = os.path.join(args.workdir, 'teacher')
      if (not workdir_layout.is_done(teacher)
          or results.get('teacher.json') is None):
        head_stage(results, plan, imported, data, teacher, command)

  # ---- the teacher's GLUE, then each student: distillation and its GLUE ------
  # Row by row, so that each finished model's numbers are final at once.
  glue = lambda name, path, seeds: glue_stage(
      results, plan, name, path, tasks, args.glue_data, seeds, args.progress)
  glue('teacher', teacher, glue_seeds('teacher'))
  for v in variants:
    workdir = os.path.join(args.workdir, 'students', v)
    if v in distil_pending:
      c = ablate.apply(plan.distil.copy_and_resolve_references(), v)
      c.teacher, c.data = teacher, data
      summary = train_stage(results, v, c, workdir, command,
                            {'variant': v, 'teacher': teacher})
      results.put(summary, 'distil', f'{v}.json')
    glue(v, workdir, glue_seeds(v))

  # ---- report ---------------------------------------------------------------
  report = tables(results, plan, [t.name for t in tasks])
  with open(results.path('tables.md'), 'w') as f:
    f.write(report + '\n')
  return {'results': results.root, 'report': report}


def define_flags(fv) -> None:
  from absl import flags
  from jaxdistil import cli, config_lib
  d = dict(flag_values=fv)
  cli.define_config(
      fv, f'{config_lib.shipped(CONFIG)}:small', 'the plan: '
      'configs/replicate.py:BUDGET (tiny or small; a shipped file also by its '
      'name, replicate.py:tiny), with --config.KEY=VALUE overrides such as '
      '--config.glue.seeds_other=3')
  flags.DEFINE_string('teacher', None, 'HF directory or hub id, jaxdistil model, '
                      'or train workdir', **d)
  flags.DEFINE_string('workdir', None, 'checkpoints of every stage', **d)
  flags.DEFINE_string('corpus', None, 'comma-separated globs to prepare', **d)
  flags.DEFINE_string('data', None, 'an already prepared directory', **d)
  flags.DEFINE_string('glue_data', None, "glue_data folder with the plan's tasks", **d)
  flags.DEFINE_string('results', None, 'where the JSON, copies of metrics and '
                      'tables go (default WORKDIR/results)', **d)
  flags.DEFINE_bool('head', True, "train the teacher's MLM head first "
                    "(--nohead: it is trained already, skip the head stage)", **d)
  flags.DEFINE_bool('progress', True, 'progress bars (--noprogress: none)', **d)


def main(argv=None) -> int:
  from jaxdistil import cli
  from jaxdistil.config_lib import ConfigError
  from jaxdistil.convert import ConvertError
  from jaxdistil.data.corpus import PrepareError
  from jaxdistil.glue.tasks import GlueError
  from jaxdistil.train import TrainError
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    args = cli.parse('python -m jaxdistil.replicate', __doc__, define_flags, argv,
                     config_flags=('config',), deprecated=DEPRECATED)
    cli.require(args, 'teacher', 'workdir', 'glue_data')
    args.argv = argv
    out = run(args)
  except (cli.UsageError, ReplicateError, ConfigError, ConvertError, PrepareError,
          GlueError, TrainError, ValueError, OSError) as e:
    print(f'jaxdistil.replicate: {(str(e).splitlines() or [""])[0]}',
          file=sys.stderr)
    return 2
  print(out['report'])
  return 0


if __name__ == '__main__':
  sys.exit(main())
