"""`replicate`'s report, from its stored results: the paper's table 1 (GLUE
dev per model), table 4 (the ablations' change against the full student,
beside the paper's) and held-out masked-LM accuracy and KL to the teacher.
Tables 1 and 4 are `glue.report`'s; a model or task not finished yet shows
'-', and a score over fewer tasks than planned is starred."""

from __future__ import annotations

from jaxdistil import ablate
from jaxdistil.replicate_results import Results

TABLE1_NAMES = {'teacher': 'Teacher', 'full': 'Student (triple loss)',
                'mlm_only': 'Student, MLM only (no teacher signal)'}
MODELS = ('teacher', 'mlm_only') + ablate.VARIANTS


def tables(results: Results, plan, tasks) -> str:
  """The markdown report of `plan` (configs/replicate.py) over `tasks`."""
  from jaxdistil.glue import metrics as glue_metrics
  from jaxdistil.glue import report

  got = {n: results.glue(n, tasks) for n in MODELS}   # each read once

  def macro(name):
    return glue_metrics.macro_score(report.task_scores(got[name]))

  def seeds(name):   # as run: the stored seeds per task, a range if they differ
    counts = sorted({len(r['per_seed']) for r in got[name].values()}) or [0]
    return str(counts[0]) if len(counts) == 1 else f'{counts[0]}-{counts[-1]}'

  def seeds_words(name):
    n = seeds(name)
    return f'{n} seed' + ('' if n == '1' else 's')

  rows = {f'{TABLE1_NAMES[n]} ({seeds_words(n)})': got[n]
          for n in ('teacher', 'full', 'mlm_only')}
  out = ['## Table 1: GLUE dev (median over seeds)', '', report.table1(rows), '']
  teacher, student, baseline = macro('teacher'), macro('full'), macro('mlm_only')
  out.append(f'Student / teacher macro-score: {100 * student / teacher:.1f}% '
             f'(paper: 97%); student - MLM-only baseline: '
             f'{student - baseline:+.2f} points.')
  out += ['', '## Table 4: ablations (GLUE macro-score, median over seeds)', '',
          report.ablation_table({v: got[v] for v in ablate.VARIANTS},
                                paper=ablate.PAPER_TABLE4,
                                seeds={v: seeds(v) for v in ablate.VARIANTS},
                                tasks=tasks)]
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
