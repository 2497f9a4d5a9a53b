"""The paper's table-4 ablations as edits of a base config.

  full         the triple loss with teacher initialisation (the reference point)
  no_ce        without L_ce        (paper: -2.96 GLUE macro-score)
  no_cos       without L_cos       (paper: -1.46)
  no_mlm       without L_mlm       (paper: -0.31)
  random_init  triple loss, student initialised at random (paper: -3.69)
"""

from __future__ import annotations

VARIANTS = ('full', 'no_ce', 'no_cos', 'no_mlm', 'random_init')


def apply(config, variant: str):
  """`config` changed in place into `variant`; returns it."""
  if variant not in VARIANTS:
    raise ValueError(f'unknown ablation {variant!r}: use one of {", ".join(VARIANTS)}')
  if variant == 'no_ce':
    config.loss.alpha_ce = 0.0
  elif variant == 'no_cos':
    config.loss.alpha_cos = 0.0
  elif variant == 'no_mlm':
    config.loss.alpha_mlm = 0.0
  elif variant == 'random_init':
    config.student_init.source = 'random'
    # As the reference's random student: fixed sinusoidal positions, frozen.
    config.student_init.random_positions = 'sinusoidal'
    config.student_init.freeze_position_embeddings = True
  return config
