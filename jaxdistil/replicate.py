"""`python -m jaxdistil.replicate`: the paper's tables 1 and 4 from one command.

    python -m jaxdistil.replicate --teacher=DIR --workdir=DIR --config=replicate.py:small \
        --corpus='../shared/data/corpus/wikipedia/wiki_*,../shared/data/corpus/gutenberg/*.txt' \
        --glue_data=../shared/data/glue --results=results/small

Stages, each skipped when its result is there (rerun the same command to resume):

  import   the teacher (an HF directory or hub id, or a jaxdistil model) into
           WORKDIR/teacher_import; a bare encoder gets a fresh MLM head
  data     `prepare` of --corpus with the teacher's tokenizer (or --data)
  head     teacher-free MLM training of the whole teacher, WORKDIR/teacher:
           the adapted model is the teacher of every later stage (--no_head
           when the teacher's head is already trained)
  distil   each variant (`configs/replicate.py`: full, no_ce, no_cos, no_mlm,
           random_init, and the MLM-only baseline) in WORKDIR/students/NAME
  glue     the teacher and every student fine-tuned on the plan's GLUE tasks
  report   tables 1 and 4, shaped like the paper's, and the held-out table

What is kept lives under --results (default WORKDIR/results), small enough to
commit: per stage a JSON with the numbers, the command, the steps, tokens and
wall time, and the machine (CPU model, measured matmul rate); each run's
`metrics.jsonl` and `config.json` under runs/NAME; per model and GLUE task a
JSON; and tables.md. A stage is done when its JSON is there. Checkpoints stay in
WORKDIR: a later session on a fresh machine (no WORKDIR) retrains only the
models that a pending stage needs, the teacher's head first.

Over 300 lines on purpose: one experiment, its stages in the order they run
(import, data, head, GLUE, distillation per variant) and the tables they feed,
so that it reads as the recipe it is.
"""

from __future__ import annotations

from jaxdistil import host_memory

if __name__ == '__main__':
  host_memory.keep_freed_memory()     # before jax starts its threads

import json
import os
import platform
import shutil
import sys
import time

from jaxdistil import workdir as workdir_layout

CONFIG = 'replicate.py'                # a shipped config (config_lib.shipped)
TABLE1_NAMES = {'teacher': 'Teacher', 'full': 'Student (triple loss)',
                'mlm_only': 'Student, MLM only (no teacher signal)'}
# Table 4 of the paper: change of the GLUE macro-score against `full`.
PAPER_TABLE4 = {'no_ce': -2.96, 'no_cos': -1.46, 'no_mlm': -0.31,
                'random_init': -3.69}


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
# Results: small JSON files under --results, one per finished piece of work

class Results:
  def __init__(self, root: str):
    self.root = root

  def path(self, *parts) -> str:
    return os.path.join(self.root, *parts)

  def get(self, *parts):
    path = self.path(*parts)
    if not os.path.isfile(path):
      return None
    with open(path) as f:
      return json.load(f)

  def put(self, value, *parts) -> None:
    path = self.path(*parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(value, f, indent=2, default=float)
      f.write('\n')
    os.replace(tmp, path)


def machine() -> dict:
  """The CPU (or accelerator) and the float32 matmul rate measured now."""
  import jax
  from jaxdistil import flops
  cpu = platform.processor() or ''
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f
                  if line.startswith('model name')), cpu)
  except OSError:
    pass
  return {'cpu': cpu, 'cores': os.cpu_count(),
          'devices': f'{jax.device_count()} x {jax.devices()[0].device_kind}',
          'matmul_gflops': round(flops.matmul_rate('float32', 1024, repeats=3) / 1e9, 1)}


def run_summary(workdir: str) -> dict:
  """Steps, real tokens, wall time and the last evaluation, from a run's
  metrics.jsonl (a resumed run's repeated steps counted once)."""
  rows = {}
  with open(workdir_layout.path(workdir, workdir_layout.METRICS)) as f:
    for line in f:
      row = json.loads(line)
      rows[row['step']] = row         # a resumed run rewrites its last steps
  steps = sorted(rows)
  last_eval = {}
  for s in steps:
    if any(k.startswith('eval/') for k in rows[s]):
      last_eval = {k: v for k, v in rows[s].items() if k.startswith('eval/')}
  return {'steps': steps[-1] if steps else 0,
          'real_tokens': int(sum(rows[s].get('tokens', 0) for s in steps)),
          'train_seconds': round(sum(rows[s].get('step_s', 0.0) for s in steps), 1),
          'final_loss': rows[steps[-1]]['loss'] if steps else None,
          'heldout': last_eval}


def keep_run(results: Results, name: str, workdir: str) -> None:
  """A copy of the run's metrics and config, for plots and for readers."""
  folder = results.path('runs', name)
  os.makedirs(folder, exist_ok=True)
  for f in (workdir_layout.METRICS, workdir_layout.CONFIG):
    if os.path.isfile(os.path.join(workdir, f)):
      shutil.copyfile(os.path.join(workdir, f), os.path.join(folder, f))


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
                  shard_size=plan.shard_size, progress_bar=not args.no_progress)
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
  from jaxdistil.glue import run as glue_run
  from jaxdistil.glue import finetune
  from jaxdistil.glue.tasks import GlueError
  pending = [t for t in tasks if seeds_stored(results, name, t.name) < seeds]
  if not pending:
    return
  bert_cfg, params, tokenizer = glue_run.default_load_model(model_path)
  if tokenizer is None:
    raise ReplicateError(f'{model_path} has no tokenizer files')
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


def seeds_stored(results: Results, name: str, task: str) -> int:
  r = results.get('glue', name, f'{task}.json')
  return len(r['per_seed']) if r else 0


def run(args) -> dict:
  from jaxdistil import ablate
  plan = args.config
  check_teacher(args.teacher)
  tasks = check_glue(plan, args.glue_data)
  if args.data and not os.path.isfile(os.path.join(args.data, 'metadata.json')):
    raise ReplicateError(f'--data={args.data!r} is not a directory made by '
                         f'python -m jaxdistil.prepare (no metadata.json)')
  if args.no_head and not has_trained_head(args.teacher):
    raise ReplicateError(f'{args.teacher} has no trained masked-LM head (a bare '
                         f'encoder such as BertModel), so it cannot be a teacher '
                         f'as it is: drop --no_head and replicate trains one')
  variants = list(plan.variants)
  results = Results(args.results or os.path.join(args.workdir, 'results'))
  command = 'python -m jaxdistil.replicate ' + ' '.join(args.argv)
  os.makedirs(args.workdir, exist_ok=True)

  # What is still to do decides which models must exist on this machine.
  glue_seeds = lambda name: (plan.glue.seeds_table1 if name in ('teacher', 'full')
                             else plan.glue.seeds_other)
  glue_pending = lambda name: any(
      seeds_stored(results, name, t.name) < glue_seeds(name) for t in tasks)
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
    if not args.no_head:
      teacher = os.path.join(args.workdir, 'teacher')
      if (not workdir_layout.is_done(teacher)
          or results.get('teacher.json') is None):
        head_stage(results, plan, imported, data, teacher, command)

  # ---- the teacher's GLUE, then each student: distillation and its GLUE ------
  # Row by row, so that each finished model's numbers are final at once.
  glue = lambda name, path, seeds: glue_stage(
      results, plan, name, path, tasks, args.glue_data, seeds,
      not args.no_progress)
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


# ----------------------------------------------------------------------------
# Tables

def glue_results(results: Results, name: str, tasks) -> dict:
  return {t: results.get('glue', name, f'{t}.json') for t in tasks}


def tables(results: Results, plan, tasks) -> str:
  from jaxdistil.glue import metrics as glue_metrics
  from jaxdistil.glue import report

  names = ('teacher', 'mlm_only', 'full', 'no_ce', 'no_cos', 'no_mlm', 'random_init')
  got = {n: {t: r for t, r in glue_results(results, n, tasks).items() if r}
         for n in names}   # each model's finished tasks, read once

  def macro(name):
    return glue_metrics.macro_score(report.task_scores(got[name]))

  def seeds(name):   # as run: the stored seeds per task, a range if they differ
    counts = sorted({len(r['per_seed']) for r in got[name].values()}) or [0]
    n = str(counts[0]) if len(counts) == 1 else f'{counts[0]}-{counts[-1]}'
    return f'{n} seed' + ('' if n == '1' else 's')

  rows = {f'{TABLE1_NAMES[n]} ({seeds(n)})': got[n]
          for n in ('teacher', 'full', 'mlm_only')}
  out = ['## Table 1: GLUE dev (median over seeds)', '', report.table1(rows), '']
  teacher, student, baseline = macro('teacher'), macro('full'), macro('mlm_only')
  out.append(f'Student / teacher macro-score: {100 * student / teacher:.1f}% '
             f'(paper: 97%); student - MLM-only baseline: '
             f'{student - baseline:+.2f} points.')
  out += ['', '## Table 4: ablations (GLUE macro-score, median over seeds)', '',
          '| Ablation | Score | Variation | Paper | Seeds |', '|---|---|---|---|---|']
  partial = []
  for v in ('full', 'no_ce', 'no_cos', 'no_mlm', 'random_init'):
    score, have = macro(v), list(got[v])
    paper = '-' if v == 'full' else f'{PAPER_TABLE4[v]:+.2f}'
    if not have:
      out.append(f'| {v} | - | - | {paper} | 0 |')
      continue
    if len(have) < len(tasks):
      partial.append(f'{v}: mean over {", ".join(have)} only')
    delta = '-' if v == 'full' else f'{score - student:+.2f}'
    out.append(f'| {v} | {score:.2f}{"*" if len(have) < len(tasks) else ""} | '
               f'{delta} | {paper} | {seeds(v).split()[0]} |')
  if partial:
    out += ['', '\\* Not every task has run yet: ' + '; '.join(partial) + '.']
  out += ['', '## Held-out masked LM (the same masked batches for every model)', '',
          '| Model | MLM accuracy | KL to teacher | Steps | Real tokens | Train time |',
          '|---|---|---|---|---|---|']
  t = results.get('teacher.json')
  for name, r in [('teacher', t)] + [(v, results.get('distil', f'{v}.json'))
                                     for v in plan.variants]:
    if not r:
      continue
    h = r['heldout']
    kl = h.get('eval/kl_to_teacher')
    out.append(f'| {name} | {h.get("eval/mlm_accuracy", float("nan")):.4f} | '
               f'{"-" if kl is None else f"{kl:.4f}"} | {r["steps"]} | '
               f'{r["real_tokens"]:,} | {r["train_seconds"] / 60:.0f} min |')
  return '\n'.join(out)


def define_flags(fv) -> None:
  from absl import flags
  from ml_collections import config_flags
  from jaxdistil import config_lib
  d = dict(flag_values=fv)
  config_flags.DEFINE_config_file(
      'config', f'{config_lib.shipped(CONFIG)}:small', 'the plan: '
      'configs/replicate.py:BUDGET (tiny or small; a shipped file also by its '
      'name, replicate.py:tiny), with --config.KEY=VALUE overrides such as '
      '--config.glue.seeds_other=3', lock_config=True, **d)
  flags.DEFINE_string('teacher', None, 'HF directory or hub id, jaxdistil model, '
                      'or train workdir', **d)
  flags.DEFINE_string('workdir', None, 'checkpoints of every stage', **d)
  flags.DEFINE_string('corpus', None, 'comma-separated globs to prepare', **d)
  flags.DEFINE_string('data', None, 'an already prepared directory', **d)
  flags.DEFINE_string('glue_data', None, "glue_data folder with the plan's tasks", **d)
  flags.DEFINE_string('results', None, 'where the JSON, copies of metrics and '
                      'tables go (default WORKDIR/results)', **d)
  flags.DEFINE_bool('no_head', False, "the teacher's MLM head is trained already: "
                    'skip the head stage', **d)
  flags.DEFINE_bool('no_progress', False, 'no progress bars', **d)


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
                     config_flags=('config',))
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
