"""Markdown tables: the paper's Table 1 (GLUE dev) and Table 4 (ablations).

Table 1 has one column per task in `TABLE1_ORDER`, each the task score in points
(the mean of the task's metrics, MNLI's matched and mismatched accuracies
included: see `metrics`), and `Score`, their unweighted mean. A task that was
not run shows `-`; a score over fewer than the nine tasks is starred and a
footnote names the tasks it covers, since it is not comparable to the paper's.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from jaxdistil.glue import metrics as glue_metrics
from jaxdistil.glue.tasks import TABLE1_ORDER


def task_scores(results: Mapping[str, dict | float | None]) -> dict:
  """{task: score in points or None} for every Table 1 column, from run_task
  results (dicts with 'score') or plain numbers."""
  out = {}
  for name in TABLE1_ORDER:
    r = results.get(name)
    out[name] = r.get('score') if isinstance(r, Mapping) else r
  return out


def _fmt(x, digits: int) -> str:
  return '-' if x is None else f'{x:.{digits}f}'


def table1_header() -> str:
  cols = ('Model', 'Score') + TABLE1_ORDER
  return ('| ' + ' | '.join(cols) + ' |\n|' + '---|' * len(cols))


def table1_row(name: str, results: Mapping, digits: int = 1) -> str:
  scores = task_scores(results)
  macro = glue_metrics.macro_score(scores)
  partial = sum(s is not None for s in scores.values()) < len(TABLE1_ORDER)
  score = '-' if macro != macro else _fmt(macro, digits) + ('*' if partial else '')
  cells = [name, score] + [_fmt(scores[t], digits) for t in TABLE1_ORDER]
  return '| ' + ' | '.join(cells) + ' |'


def table1(rows: Mapping[str, Mapping], digits: int = 1) -> str:
  """Rows {model name: {task: result or score}} as Table 1."""
  lines = [table1_header()] + [table1_row(n, r, digits) for n, r in rows.items()]
  notes = []
  for name, results in rows.items():
    present = [t for t, s in task_scores(results).items() if s is not None]
    if 0 < len(present) < len(TABLE1_ORDER):
      notes.append(f'{name}: mean over {len(present)} of {len(TABLE1_ORDER)} '
                   f'tasks ({", ".join(present)})')
  if notes:
    lines.append('')
    lines.append('\\* ' + '; '.join(notes) + '.')
  return '\n'.join(lines)


def ablation_table(variants: Mapping[str, Mapping | float],
                   reference: str = 'full', digits: int = 2,
                   paper: Mapping[str, float] | None = None,
                   seeds: Mapping[str, str] | None = None,
                   tasks: Sequence[str] | None = None) -> str:
  """Table 4: per variant, its GLUE macro score and the change against
  `reference` (the full triple loss with teacher initialisation).

  `variants` maps a variant name to its macro score or to its per-task
  results; one with no results yet (an empty mapping) shows '-'. `paper`
  (the paper's change, per variant) and `seeds` (the seeds run, per variant)
  add those columns. Given the `tasks` run, a variant with results for fewer
  of them is starred, and a footnote names the tasks its score covers.
  """
  def macro(v):
    return (glue_metrics.macro_score(task_scores(v)) if isinstance(v, Mapping)
            else float(v))

  if reference not in variants:
    raise ValueError(f'no {reference!r} variant to compare against (have '
                     f'{list(variants)})')
  base = macro(variants[reference])
  cols = (['Ablation', 'Score', 'Variation'] + ['Paper'] * (paper is not None)
          + ['Seeds'] * (seeds is not None))
  lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
  partial = []
  for name, v in variants.items():
    cells = [name, '-', '-']
    if not (isinstance(v, Mapping) and not v):
      score = macro(v)
      short = tasks is not None and isinstance(v, Mapping) and len(v) < len(tasks)
      if short:
        partial.append(f'{name}: mean over {", ".join(v)} only')
      cells[1:] = [f'{score:.{digits}f}' + ('*' if short else ''),
                   '-' if name == reference else f'{score - base:+.{digits}f}']
    if paper is not None:
      cells.append('-' if name == reference or name not in paper
                   else f'{paper[name]:+.{digits}f}')
    if seeds is not None:
      cells.append(str(seeds.get(name, 0)))
    lines.append('| ' + ' | '.join(cells) + ' |')
  if partial:
    lines += ['', '\\* Not every task has run yet: ' + '; '.join(partial) + '.']
  return '\n'.join(lines)
