"""The paper's table-4 ablations of the base setting, one variant per argument:

    python -m jaxdistil.train --config=configs/ablate.py:no_ce --workdir=runs/no_ce

  full         the triple loss with teacher initialisation (the reference point)
  no_ce        without L_ce        (paper: -2.96 GLUE macro-score)
  no_cos       without L_cos       (paper: -1.46)
  no_mlm       without L_mlm       (paper: -0.31)
  random_init  triple loss, student initialised at random (paper: -3.69)

Any base can be given after a comma: `ablate.py:no_ce,small` uses configs/small.py.
"""

import os

from jaxdistil import ablate, config_lib

VARIANTS = ablate.KNOWN


def get_config(arg: str = 'full'):
  variant, _, base = arg.partition(',')
  if variant not in VARIANTS:
    raise ValueError(f'unknown ablation {variant!r}: use one of {", ".join(VARIANTS)}')
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      f'{base or "distilbert_base"}.py')
  return ablate.apply(config_lib.load_file(path), variant)
