"""Make a transfer set for task distillation (`glue.augment`), resumably.

    python -m jaxdistil.augment --mlm=DIR --task=SST-2 --data_dir=glue_data \
        --output=transfer/sst2 [--copies=20] [--p=0.4] [--top_k=15] [--seed=0]
    python -m jaxdistil.glue --model=STUDENT --teacher=TEACHER --task=SST-2 \
        --data_dir=glue_data --transfer_set=transfer/sst2 --workdir=runs/kd

`--mlm` is a masked-LM model with a trained head (an HF `*ForMaskedLM`, a
jaxdistil model or a train workdir) whose WordPiece tokenizer proposes the
replacements: TinyBERT's recipe (each one-piece word that is not a stop
word replaced with probability p by one of the MLM's top-k candidates for
it; N draws a text column, duplicates dropped; see `glue.augment` for where
it differs). The task's training split (capped by `--max_train_examples`, as
`glue` draws it with the same --seed) is what is augmented. A killed run,
called again, continues where it stopped, to the same bytes. Errors are one
line on stderr, exit code 2.
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from jaxdistil import cli

PROG = 'python -m jaxdistil.augment'


def define_flags(fv: flags.FlagValues) -> None:
  d = dict(flag_values=fv)
  flags.DEFINE_string('mlm', None, 'masked-LM model with a trained head', **d)
  flags.DEFINE_string('task', None, 'the GLUE task whose training split is '
                      'augmented', **d)
  flags.DEFINE_string('data_dir', None, 'glue_data folder', **d)
  flags.DEFINE_string('output', None, 'the transfer set folder (new, or one '
                      'this command started: it resumes)', **d)
  flags.DEFINE_integer('copies', None, 'draws per text column of a training '
                       "example (N; default TinyBERT's for the task: 10 for "
                       'MNLI and QQP, 20 for SST-2 and QNLI, 30 for the others)',
                       lower_bound=0, **d)
  flags.DEFINE_float('p', 0.4, 'probability that a word is replaced', **d)
  flags.DEFINE_integer('top_k', 15, "candidates per word (the MLM's top k)",
                       lower_bound=1, **d)
  flags.DEFINE_integer('seed', 0, 'seed of the draws (and of the training '
                       'subset, as glue --seed)', **d)
  flags.DEFINE_integer('max_len', 128, 'longest text, in tokens', lower_bound=8,
                       **d)
  flags.DEFINE_integer('max_train_examples', None, 'the random subset of the '
                       'training split that glue fine-tunes on', **d)


def main(argv: Sequence[str] | None = None) -> int:
  try:
    args = cli.parse(PROG, __doc__, define_flags, argv)
    cli.require(args, 'mlm', 'task', 'data_dir', 'output')
    from jaxdistil.glue import augment, data as glue_data
    from jaxdistil.convert import load_model
    from jaxdistil.convert.hf_in import MissingHeadError
    from jaxdistil.glue.run import load_tokenizer
    from jaxdistil.glue.tasks import get as get_task
    task = get_task(args.task)
    glue_data.check_files(task, args.data_dir)
    train = glue_data.read_split(task, glue_data.TRAIN, args.data_dir, 'tsv')
    train = glue_data.subsample(train, args.max_train_examples, args.seed)
    try:
      loaded = load_model(args.mlm)
    except MissingHeadError:
      loaded = None
    if loaded is None or loaded.fresh_head:
      raise cli.UsageError(f'--mlm={args.mlm} has no trained masked-LM head: its '
                           f'candidates would be noise; give a *ForMaskedLM')
    if not loaded.tokenizer_dir:
      raise cli.UsageError(f'--mlm={args.mlm} has no tokenizer files')
    copies = (augment.copies_for(task.name) if args.copies is None
              else args.copies)
    cfg = augment.AugmentConfig(copies=copies, p=args.p, top_k=args.top_k,
                                seed=args.seed, max_len=args.max_len)
    settings = augment.augment(
        train, loaded.config, loaded.params, load_tokenizer(loaded.tokenizer_dir),
        args.output, cfg, task=task.name,
        on_shard=lambda s: print(f'jaxdistil.augment: shard {s + 1} written',
                                 file=sys.stderr, flush=True))
  except (cli.UsageError, ValueError) as e:    # GlueError is a ValueError
    print(f'jaxdistil.augment: {(str(e).splitlines() or [""])[0]}',
          file=sys.stderr)
    return 2
  print(f'jaxdistil.augment: {args.output}: {settings["rows"]} new examples '
        f'from {settings["examples"]} ({copies} draws a text column, duplicates '
        f'dropped)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
