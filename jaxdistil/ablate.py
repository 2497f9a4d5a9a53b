"""`python -m jaxdistil.ablate`: the paper's table 4 for your own base config.

    python -m jaxdistil.ablate --config=configs/small.py --workdir=runs/ablate \
        --glue_data=../shared/data/glue --tasks=all [--variants=full,no_ce,...] \
        [--set=key=value ...] [--seeds=N]

For each variant (`jaxdistil.ablation`: full, no_ce, no_cos, no_mlm,
random_init) it trains the base config changed into that variant in
WORKDIR/<variant> (resuming whatever a previous invocation left), fine-tunes and
evaluates the student on the GLUE tasks, and prints every variant's GLUE macro
score with its change against `full`, as the paper's table 4, plus a table-1
row per variant. Results go to WORKDIR/ablation.json and WORKDIR/ablation.md.
"""

from __future__ import annotations

from jaxdistil import host_memory

if __name__ == '__main__':
  host_memory.keep_freed_memory()     # before jax starts its threads

import argparse
import json
import os
import sys

from jaxdistil import ablation


def set_value(config, assignment: str) -> None:
  """`key.sub=value`, parsed like a command-line override (types kept)."""
  key, sep, raw = assignment.partition('=')
  if not sep:
    raise ValueError(f'--set {assignment!r}: use key=value')
  *parents, leaf = key.split('.')
  node = config
  for p in parents:
    if p not in node:
      raise ValueError(f'--set {assignment!r}: unknown config key {key!r}')
    node = node[p]
  if leaf not in node:
    raise ValueError(f'--set {assignment!r}: unknown config key {key!r}')
  old = node[leaf]
  if isinstance(old, bool):
    value = raw.lower() in ('1', 'true', 'yes')
  elif isinstance(old, int):
    value = int(raw)
  elif isinstance(old, float):
    value = float(raw)
  elif isinstance(old, tuple):
    value = tuple(int(x) for x in raw.strip('()').split(',') if x.strip())
  else:
    value = raw
  node[leaf] = value


def run(args) -> dict:
  from jaxdistil import config_lib, train
  from jaxdistil.glue import __main__ as glue_cli
  from jaxdistil.glue import finetune, report
  from jaxdistil.glue import metrics as glue_metrics

  variants = [v.strip() for v in args.variants.split(',') if v.strip()]
  for v in variants:
    if v not in ablation.KNOWN:
      raise ValueError(f'unknown variant {v!r}: use {", ".join(ablation.KNOWN)}')
  if 'full' not in variants:
    raise ValueError('--variants must include full: the deltas are against it')
  tasks, source = glue_cli.resolve_tasks(args.tasks, args.glue_data, 'tsv')
  results = {}
  for variant in variants:
    config = ablation.apply(config_lib.load_file(args.config), variant)
    for assignment in args.set:
      set_value(config, assignment)
    workdir = os.path.join(args.workdir, variant)
    print(f'jaxdistil.ablate: {variant}: training in {workdir}', file=sys.stderr)
    train.train(config, workdir)
    bert_cfg, params, tokenizer = glue_cli.default_load_model(workdir)
    if args.tokenizer:
      tokenizer = glue_cli.load_tokenizer(args.tokenizer)
    if tokenizer is None:
      raise ValueError(f'{workdir} has no tokenizer files: pass --tokenizer=DIR')
    per_task = {}
    for task in tasks:
      per_task[task.name] = finetune.run_task(
          task, args.glue_data, bert_cfg, params, tokenizer, seeds=args.seeds,
          max_steps=args.glue_max_steps, max_len=args.glue_max_len,
          source=source, progress=not args.no_progress)
      print(f'jaxdistil.ablate: {variant}: {task.name} '
            f'{per_task[task.name]["score"]:.2f}', file=sys.stderr)
    results[variant] = per_task

  table4 = report.ablation_table(results)
  table1 = report.table1(results)
  summary = {
      'config': args.config, 'set': args.set, 'variants': variants,
      'tasks': [t.name for t in tasks], 'seeds': args.seeds,
      'score': {v: glue_metrics.macro_score(report.task_scores(r))
                for v, r in results.items()},
      'results': results, 'table4': table4, 'table1': table1}
  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, 'ablation.json'), 'w') as f:
    json.dump(summary, f, indent=2, default=float)
  with open(os.path.join(args.workdir, 'ablation.md'), 'w') as f:
    f.write(table4 + '\n\n' + table1 + '\n')
  return summary


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog='python -m jaxdistil.ablate',
                              description=__doc__.splitlines()[0])
  p.add_argument('--config', required=True, help='base config file (file.py[:arg])')
  p.add_argument('--workdir', required=True, help='one sub-directory per variant')
  p.add_argument('--glue_data', required=True, help='glue_data folder')
  p.add_argument('--tasks', default='all', help='GLUE tasks: all or A,B,...')
  p.add_argument('--variants', default=','.join(ablation.VARIANTS))
  p.add_argument('--set', action='append', default=[],
                 help='config override key=value (repeatable), for every variant')
  p.add_argument('--seeds', type=int, default=1, help='GLUE fine-tuning seeds')
  p.add_argument('--glue_max_steps', type=int, default=None,
                 help='cap fine-tuning steps per task (default: 3 epochs)')
  p.add_argument('--glue_max_len', type=int, default=128)
  p.add_argument('--tokenizer', default=None,
                 help='tokenizer folder when the runs have none of their own')
  p.add_argument('--no_progress', action='store_true')
  args = p.parse_args(argv)
  from jaxdistil.config_lib import ConfigError
  from jaxdistil.train import TrainError
  try:
    summary = run(args)
  except (ConfigError, TrainError, ValueError, OSError) as e:
    print(f'jaxdistil.ablate: {e}', file=sys.stderr)
    return 2
  print(summary['table4'])
  print()
  print(summary['table1'])
  return 0


if __name__ == '__main__':
  sys.exit(main())
