"""The task-distillation tables of RESULTS.md, from the JSON results beside it.

    python results/kd/table.py > results/kd/table.md

Rows: each cell is the median over seeds of the task's GLUE score (MRPC: mean
of F1 and accuracy) with the seeds' range, then its percentage of the
teacher used (the saved median-seed model, teacher/TASK.saved.json). The
macro is over CoLA, SST-2 and MRPC where a row has all three; WNLI is shown
beside, out of the macro (every model here, the teacher included, scores
below its majority class). Train wall time is summed over
the row's seeds and tasks (compiles included, evaluation not), on whatever
machine ran it.

Sweep: one seed each on SST-2 and MRPC, the mean of the two percentages of
the teacher (what `sweep.py` picks settings by).
"""

import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
MACRO = ('CoLA', 'SST-2', 'MRPC')
ORDER = MACRO + ('WNLI',)
ROWS = (
    ('teacher', 'Teacher: MiniLM-L6-H384 fine-tuned, 3 seeds (median)'),
    ('alone_3ep', '(d) alone: lr 5e-5, 3 epochs [round 3]'),
    ('kd_3ep', '(d) distilled: lr 5e-5, T 2, alpha 0.5, 3 epochs [round 3]'),
    ('alone_10ep', '(d) alone: lr 5e-5, 10 epochs [round 3]'),
    ('kd_10ep', '(d) distilled: lr 5e-5, T 2, alpha 0.5, 10 epochs [round 3]'),
    ('rows/alone', '(d) alone, the sweep\'s best'),
    ('rows/kd', '(d) distilled, the sweep\'s best'),
)


def load(folder, suffix='.json'):
  out = {}
  for path in sorted(glob.glob(os.path.join(HERE, folder, '*' + suffix))):
    if suffix == '.json' and path.endswith('.saved.json'):
      continue
    summary = json.load(open(path))
    for name, result in summary['tasks'].items():
      out[name] = dict(result, _name=summary['name'])
  return out


def teacher_used():
  return load('teacher', '.saved.json')


def cpu_s(res) -> float | None:
  times = [t['train_s'] for r in res.values() for t in r.get('timing', [])]
  return sum(times) if times else None


def pct(x, t):
  return f'{100 * x / t:.1f}%' if t else '-'


def rows_table(teacher) -> list[str]:
  head = (['Model', 'Seeds'] + [f'{t} (% of teacher)' for t in ORDER]
          + ['Macro CoLA, SST-2, MRPC', '% of teacher', 'Train wall time'])
  out = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  entries = [('teacher used', 'Teacher used: the saved median seed, retrained '
              'here (teacher/*.saved.json)', teacher)]
  entries += [(key, label, load(key)) for key, label in ROWS]
  tmacro = (sum(teacher[t]['score'] for t in MACRO) / len(MACRO)
            if all(t in teacher for t in MACRO) else None)
  for key, label, res in entries:
    if not res:
      continue
    cells = []
    for t in ORDER:
      if t not in res:
        cells.append('-')
        continue
      seeds = [r['score'] for r in res[t]['per_seed']]
      spread = (f' ({min(seeds):.1f} to {max(seeds):.1f})' if len(seeds) > 1
                else '')
      share = (f', {pct(res[t]["score"], teacher[t]["score"])}'
               if t in teacher and key != 'teacher used' else '')
      cells.append(f'{res[t]["score"]:.1f}{spread}{share}')
    have = all(t in res for t in MACRO)
    macro = sum(res[t]['score'] for t in MACRO) / len(MACRO) if have else None
    n = sorted({len(r['per_seed']) for r in res.values()})
    cpu = cpu_s(res)
    out.append('| ' + ' | '.join(
        [label, '/'.join(map(str, n))] + cells +
        [f'{macro:.1f}' if macro is not None else '-',
         pct(macro, tmacro) if macro is not None and tmacro else '-',
         f'{cpu / 60:.0f} min' if cpu else '-']) + ' |')
  return out


def sweep_table(teacher) -> list[str]:
  head = ['Setting', 'SST-2 (% of teacher)', 'MRPC (% of teacher)',
          'Mean %', 'Train wall time']
  out = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for folder in sorted(glob.glob(os.path.join(HERE, 'sweep', '*', ''))):
    name = os.path.basename(os.path.dirname(folder))
    res = load(os.path.join('sweep', name))
    cells, shares = [], []
    for t in ('SST-2', 'MRPC'):
      if t not in res:
        cells.append('-')
        continue
      share = (100 * res[t]['score'] / teacher[t]['score'] if t in teacher
               else None)
      if share is not None:
        shares.append(share)
      cells.append(f'{res[t]["score"]:.1f}'
                   + (f' ({share:.1f}%)' if share is not None else ''))
    cpu = cpu_s(res)
    out.append('| ' + ' | '.join(
        [name] + cells + [f'{sum(shares) / len(shares):.1f}%'
                          if len(shares) == 2 else '-',
                          f'{cpu / 60:.0f} min' if cpu else '-']) + ' |')
  return out


def main():
  teacher = teacher_used()
  print('\n'.join(rows_table(teacher)))
  if glob.glob(os.path.join(HERE, 'sweep', '*', '*.json')):
    print()
    print('\n'.join(sweep_table(teacher)))


if __name__ == '__main__':
  main()
