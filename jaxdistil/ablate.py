"""The paper's table-4 ablations, as edits of a distillation config.

The variants (`apply`):

  full         the triple loss with teacher initialisation (the reference point)
  no_ce        without L_ce        (paper: -2.96 GLUE macro-score)
  no_cos       without L_cos       (paper: -1.46)
  no_mlm       without L_mlm       (paper: -0.31)
  random_init  triple loss, student initialised at random (paper: -3.69)

and the baseline of table 1 that shows what the teacher's signal adds:

  mlm_only     the same student, initialised from the teacher's layers, trained
               by masked-LM alone (no L_ce, no L_cos)

`python -m jaxdistil.replicate` trains every variant, fine-tunes each on GLUE
and prints table 4, resuming from its stored results; one variant alone
trains with `python -m jaxdistil.train --config=configs/ablate.py:no_ce`.
(`python -m jaxdistil.ablate`, which did part of `replicate`'s work without
resuming, is gone: it says so in one line.)
"""

from __future__ import annotations

import sys

VARIANTS = ('full', 'no_ce', 'no_cos', 'no_mlm', 'random_init')
BASELINES = ('mlm_only',)
KNOWN = VARIANTS + BASELINES
# Table 4 of the paper: change of the GLUE macro-score against `full`.
PAPER_TABLE4 = {'no_ce': -2.96, 'no_cos': -1.46, 'no_mlm': -0.31,
                'random_init': -3.69}


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


def main(argv=None) -> int:
  """The command that was: one line pointing to `replicate`."""
  del argv
  print('jaxdistil.ablate: this command is gone: python -m jaxdistil.replicate '
        'trains the table-4 variants (resumably) and prints table 4; see '
        'README.md', file=sys.stderr)
  return 2


if __name__ == '__main__':
  sys.exit(main())
