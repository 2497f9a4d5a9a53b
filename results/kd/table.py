"""The task-distillation table of RESULTS.md, from the JSON results beside it.

    python results/kd/table.py > results/kd/table.md

Each cell is the median over seeds of the task's GLUE score (MRPC: mean of F1
and accuracy), with the seeds' range; the macro is over the tasks every row
has; '% of teacher' is the macro against the teacher's on the same tasks.
"""

import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = (('teacher', 'Teacher: MiniLM-L6-H384 fine-tuned'),
        ('alone_3ep', '3 layers (0, 2, 5), fine-tuned alone, 3 epochs'),
        ('kd_3ep', '3 layers + task distillation (T 2, alpha 0.5), 3 epochs'),
        ('alone_10ep', '3 layers alone, 10 epochs'),
        ('kd_10ep', '3 layers + task distillation, 10 epochs'))
ORDER = ('CoLA', 'SST-2', 'MRPC', 'WNLI')


def load(row):
  out = {}
  for path in glob.glob(os.path.join(HERE, row, '*.json')):
    tasks = json.load(open(path))['tasks']
    for name, result in tasks.items():
      out[name] = result
  return out


def main():
  rows = [(key, label, load(key)) for key, label in ROWS]
  rows = [r for r in rows if r[2]]
  common = [t for t in ORDER if all(t in r[2] for r in rows)]
  teacher = rows[0][2] if rows and rows[0][0] == 'teacher' else {}
  head = ['Model', 'Seeds'] + list(ORDER) + [f'Macro ({", ".join(common)})',
                                            '% of teacher']
  print('| ' + ' | '.join(head) + ' |')
  print('|' + '---|' * len(head))
  for key, label, res in rows:
    cells = []
    for t in ORDER:
      if t not in res:
        cells.append('-')
        continue
      seeds = [r['score'] for r in res[t]['per_seed']]
      cells.append(f"{res[t]['score']:.1f} ({min(seeds):.1f}-{max(seeds):.1f})")
    macro = (sum(res[t]['score'] for t in common) / len(common)) if common else None
    tmacro = (sum(teacher[t]['score'] for t in common) / len(common)
              if common and teacher else None)
    n = sorted({len(r['per_seed']) for r in res.values()})
    print('| ' + ' | '.join(
        [label, '/'.join(map(str, n))] + cells +
        [f'{macro:.1f}' if macro is not None else '-',
         f'{100 * macro / tmacro:.1f}%' if macro is not None and tmacro else '-'])
        + ' |')


if __name__ == '__main__':
  main()
