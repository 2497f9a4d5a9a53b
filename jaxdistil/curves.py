"""`python -m jaxdistil.curves`: held-out curves of several runs as one PNG.

    python -m jaxdistil.curves --runs=results/small/runs --output=results/small/curves.png
    python -m jaxdistil.curves --runs=runs/a,runs/b --output=curves.png

`--runs` is a folder whose sub-folders each hold a `metrics.jsonl` (a train
workdir's, or the copies `replicate` keeps under results/runs), or a
comma-separated list of such run folders. Each run is a line named after its
folder; the two panels are the evaluations `train` logs every `eval_every`
steps: held-out masked-LM accuracy, and KL to the teacher (runs evaluated
without a teacher have no KL line). No TensorBoard needed: matplotlib only.
"""

from __future__ import annotations

import json
import os
import sys

PANELS = (('eval/mlm_accuracy', 'held-out masked-LM accuracy'),
          ('eval/kl_to_teacher', 'held-out KL(teacher || student), T^2-scaled'))


def find_runs(spec: str) -> dict:
  """{name: folder} of the runs `spec` names."""
  parts = [p for p in spec.split(',') if p]
  if len(parts) == 1 and not os.path.isfile(os.path.join(parts[0], 'metrics.jsonl')):
    root = parts[0]
    if not os.path.isdir(root):
      raise ValueError(f'--runs={root!r} is not a folder')
    parts = [os.path.join(root, d) for d in sorted(os.listdir(root))
             if os.path.isfile(os.path.join(root, d, 'metrics.jsonl'))]
    if not parts:
      raise ValueError(f'no run in {root!r}: expected sub-folders holding '
                       f'metrics.jsonl')
  runs = {}
  for folder in parts:
    if not os.path.isfile(os.path.join(folder, 'metrics.jsonl')):
      raise ValueError(f'{folder!r} has no metrics.jsonl')
    runs[os.path.basename(os.path.normpath(folder))] = folder
  return runs


def eval_curves(folder: str) -> dict:
  """{metric: ([steps], [values])} of a run's evaluations, in step order (a
  resumed run's repeated steps counted once, the later value kept)."""
  rows = {}
  with open(os.path.join(folder, 'metrics.jsonl')) as f:
    for line in f:
      line = line.strip()
      if line:
        row = json.loads(line)
        rows[row['step']] = row
  curves = {}
  for step in sorted(rows):
    for key, _ in PANELS:
      if key in rows[step]:
        xs, ys = curves.setdefault(key, ([], []))
        xs.append(step)
        ys.append(rows[step][key])
  return curves


def plot(runs: dict, output: str, title: str | None = None) -> dict:
  """Draws the PNG; returns the curves it drew."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  data = {name: eval_curves(folder) for name, folder in runs.items()}
  if not any(data.values()):
    raise ValueError('none of the runs has an evaluation in its metrics.jsonl '
                     '(set eval_every)')
  fig, axes = plt.subplots(1, len(PANELS), figsize=(12, 4.5))
  for ax, (key, label) in zip(axes, PANELS):
    for name, curves in data.items():
      if key in curves:
        xs, ys = curves[key]
        ax.plot(xs, ys, marker='o', markersize=3, label=name)
    ax.set_xlabel('step')
    ax.set_title(label, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  fig.savefig(output, dpi=110)
  plt.close(fig)
  return data


def define_flags(fv) -> None:
  from absl import flags
  flags.DEFINE_string('runs', None, 'a folder of run folders, or RUN1,RUN2,... '
                      '(each with metrics.jsonl)', flag_values=fv)
  flags.DEFINE_string('output', None, 'the PNG to write', flag_values=fv)
  flags.DEFINE_string('title', None, 'figure title', flag_values=fv)


def main(argv=None) -> int:
  from jaxdistil import cli
  try:
    args = cli.parse('python -m jaxdistil.curves', __doc__, define_flags, argv)
    cli.require(args, 'runs', 'output')
    data = plot(find_runs(args.runs), args.output, args.title)
  except (cli.UsageError, ValueError, OSError) as e:
    print(f'jaxdistil.curves: {e}', file=sys.stderr)
    return 2
  print(f'{args.output}: {len(data)} run(s)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
