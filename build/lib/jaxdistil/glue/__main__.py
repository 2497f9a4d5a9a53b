"""Fine-tune and evaluate a checkpoint on GLUE; print the paper's Table 1 row.

    python -m jaxdistil.glue --model=DIR --task=all --data_dir=glue_data \
        [--seeds=5] [--output=results/student.json]
    python -m jaxdistil.glue --model=DIR --task=tfds:glue/sst2 --data_dir=~/tfds

`--task` is one task (CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE, WNLI), a
comma-separated list, `all` (every task whose files are in `--data_dir`), or
`tfds:glue/<config>` to read a built TensorFlow Datasets copy (`--source=tfds`
does the same for names and `all`). `--output` gets the JSON results and, next
to it (`.md`), the markdown table. Each task's JSON has `padding_fraction`
({'train', 'eval'}: padding tokens over all tokens of the batches run, which
length buckets keep low; `--no_length_buckets` pads everything to --max_len).
Errors are one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from jaxdistil.glue.run import evaluate, write_outputs
from jaxdistil.glue.tasks import GlueError


def parse_args(argv: Sequence[str] | None):
  p = argparse.ArgumentParser(prog='python -m jaxdistil.glue',
                              description=__doc__.splitlines()[0])
  p.add_argument('--model', required=True,
                 help='checkpoint or Hugging Face directory (jaxdistil.convert)')
  p.add_argument('--task', default='all',
                 help='TASK, TASK1,TASK2, all, or tfds:glue/<config>')
  p.add_argument('--tokenizer', default=None,
                 help='tokenizer folder or hub id (default: the model\'s own)')
  p.add_argument('--data_dir', default=None,
                 help='glue_data folder (or TFDS data_dir with --source=tfds)')
  p.add_argument('--source', choices=('tsv', 'tfds'), default='tsv')
  p.add_argument('--seeds', type=int, default=1, help='runs per task (median)')
  p.add_argument('--seed', type=int, default=0, help='first seed')
  p.add_argument('--epochs', type=float, default=3.0)
  p.add_argument('--lr', type=float, default=2e-5)
  p.add_argument('--batch_size', type=int, default=32)
  p.add_argument('--max_len', type=int, default=128)
  p.add_argument('--max_steps', type=int, default=None)
  p.add_argument('--max_train_examples', type=int, default=None,
                 help='random subset of each train split (smoke runs)')
  p.add_argument('--no_length_buckets', action='store_true',
                 help='pad every example to --max_len (default: to the '
                      'smallest of 8, 12, 16, 24, 32, 48, ... that holds it)')
  p.add_argument('--name', default=None, help='row name (default: model dir)')
  p.add_argument('--output', default=None, help='JSON results (+ .md table)')
  p.add_argument('--no_progress', action='store_true')
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None,
         load_model: Callable | None = None) -> int:
  args = parse_args(argv)
  try:
    summary = evaluate(args, load_model)
  except GlueError as e:
    print(f'jaxdistil.glue: {e}', file=sys.stderr)
    return 2
  print(write_outputs(summary, args.output))
  return 0


if __name__ == '__main__':
  sys.exit(main())
