"""The paper's table-4 ablations, and `python -m jaxdistil.ablate` that runs them.

    python -m jaxdistil.ablate --config=configs/small.py --workdir=runs/ablate \
        --glue_data=../shared/data/glue --tasks=all [--variants=full,no_ce,...] \
        [--config.key=value ...] [--seeds=N]

The variants, as edits of a base config (`apply`):

  full         the triple loss with teacher initialisation (the reference point)
  no_ce        without L_ce        (paper: -2.96 GLUE macro-score)
  no_cos       without L_cos       (paper: -1.46)
  no_mlm       without L_mlm       (paper: -0.31)
  random_init  triple loss, student initialised at random (paper: -3.69)

and the baseline of table 1 that shows what the teacher's signal adds:

  mlm_only     the same student, initialised from the teacher's layers, trained
               by masked-LM alone (no L_ce, no L_cos)

One variant alone trains with `python -m jaxdistil.train
--config=configs/ablate.py:no_ce`. For each variant given, the command trains
the base config (with its `--config.` overrides) changed into that variant in
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

VARIANTS = ('full', 'no_ce', 'no_cos', 'no_mlm', 'random_init')
BASELINES = ('mlm_only',)
KNOWN = VARIANTS + BASELINES


def apply(config, variant: str):
  """`config` changed in place into `variant`; returns it."""
  if variant not in KNOWN:
    raise ValueError(f'unknown ablation {variant!r}: use one of {", ".join(KNOWN)}')
  if variant == 'no_ce':
    config.loss.alpha_ce = 0.0
  elif variant == 'no_cos':
    config.loss.alpha_cos = 0.0
  elif variant == 'no_mlm':
    config.loss.alpha_mlm = 0.0
  elif variant == 'mlm_only':
    config.loss.alpha_ce = 0.0
    config.loss.alpha_cos = 0.0
  elif variant == 'random_init':
    config.student_init.source = 'random'
    # As the reference's random student: fixed sinusoidal positions, frozen.
    config.student_init.random_positions = 'sinusoidal'
    config.student_init.freeze_position_embeddings = True
  return config


def run(base, args) -> dict:
  """Every variant of `base` (a config) trained, fine-tuned and tabled; `args`
  holds the command's other flags (workdir, glue_data, tasks, variants, ...)."""
  from jaxdistil import train
  from jaxdistil.glue import finetune, report
  from jaxdistil.glue import metrics as glue_metrics
  from jaxdistil.glue import run as glue_run

  variants = [v.strip() for v in args.variants.split(',') if v.strip()]
  for v in variants:
    if v not in KNOWN:
      raise ValueError(f'unknown variant {v!r}: use {", ".join(KNOWN)}')
  if 'full' not in variants:
    raise ValueError('--variants must include full: the deltas are against it')
  tasks, source = glue_run.resolve_tasks(args.tasks, args.glue_data, 'tsv')
  results = {}
  for variant in variants:
    config = apply(base.copy_and_resolve_references(), variant)
    workdir = os.path.join(args.workdir, variant)
    print(f'jaxdistil.ablate: {variant}: training in {workdir}', file=sys.stderr)
    train.train(config, workdir)
    bert_cfg, params, tokenizer = glue_run.default_load_model(workdir)
    if args.tokenizer:
      tokenizer = glue_run.load_tokenizer(args.tokenizer)
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
      'config': args.config, 'overrides': args.overrides, 'variants': variants,
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


def main(argv):
  del argv
  if _CONFIG.value is None or not _WORKDIR.value or not _GLUE_DATA.value:
    raise app.UsageError('--config=FILE, --workdir=DIR and --glue_data=DIR are '
                         'required')
  from absl import flags
  from jaxdistil.config_lib import ConfigError
  from jaxdistil.glue.tasks import GlueError
  from jaxdistil.train_log import TrainError
  args = argparse.Namespace(
      config=config_flags.get_config_filename(flags.FLAGS['config']),
      overrides={k: str(v) for k, v in config_flags.get_override_values(
          flags.FLAGS['config']).items()},
      workdir=_WORKDIR.value, glue_data=_GLUE_DATA.value, tasks=_TASKS.value,
      variants=_VARIANTS.value, seeds=_SEEDS.value,
      glue_max_steps=_GLUE_MAX_STEPS.value, glue_max_len=_GLUE_MAX_LEN.value,
      tokenizer=_TOKENIZER.value, no_progress=_NO_PROGRESS.value)
  try:
    summary = run(_CONFIG.value, args)
  except (ConfigError, TrainError, GlueError, ValueError, OSError) as e:
    print(f'jaxdistil.ablate: {e}', file=sys.stderr)
    sys.exit(2)
  print(summary['table4'])
  print()
  print(summary['table1'])


if __name__ == '__main__':
  # Flags only for the command: `configs/ablate.py` imports this module into
  # `train`, whose own --config flag must stay the only one.
  from absl import app, flags
  from ml_collections import config_flags

  from jaxdistil.config_lib import flags_parser
  _CONFIG = config_flags.DEFINE_config_file(
      'config', None, 'Base config file (file.py[:arg]); --config.key=value '
      'overrides it for every variant.', lock_config=True)
  _WORKDIR = flags.DEFINE_string('workdir', None, 'One sub-directory per variant.')
  _GLUE_DATA = flags.DEFINE_string('glue_data', None, 'The glue_data folder.')
  _TASKS = flags.DEFINE_string('tasks', 'all', 'GLUE tasks: all or A,B,...')
  _VARIANTS = flags.DEFINE_string('variants', ','.join(VARIANTS),
                                  f'Comma-separated, of {", ".join(KNOWN)}.')
  _SEEDS = flags.DEFINE_integer('seeds', 1, 'GLUE fine-tuning seeds.')
  _GLUE_MAX_STEPS = flags.DEFINE_integer(
      'glue_max_steps', None, 'Cap fine-tuning steps per task (default: 3 epochs).')
  _GLUE_MAX_LEN = flags.DEFINE_integer('glue_max_len', 128, 'GLUE sequence length.')
  _TOKENIZER = flags.DEFINE_string(
      'tokenizer', None, 'Tokenizer folder when the runs have none of their own.')
  _NO_PROGRESS = flags.DEFINE_bool('no_progress', False, 'No progress bars.')
  app.run(main, flags_parser=flags_parser('jaxdistil.ablate'))
