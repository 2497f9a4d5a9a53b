"""The paper's table-4 ablations of the base setting, one variant per argument:

    python -m jaxdistil.train --config=configs/ablation.py:no_ce --workdir=runs/no_ce

  full         the triple loss with teacher initialisation (the reference point)
  no_ce        without L_ce        (paper: -2.96 GLUE macro-score)
  no_cos       without L_cos       (paper: -1.46)
  no_mlm       without L_mlm       (paper: -0.31)
  random_init  triple loss, student initialised at random (paper: -3.69)

Any base can be given after a comma: `ablation.py:no_ce,small` uses configs/small.py.
"""

import importlib.util
import os

from jaxdistil import ablation

VARIANTS = ablation.VARIANTS


def _base(name: str):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'jaxdistil_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def get_config(arg: str = 'full'):
  variant, _, base = arg.partition(',')
  if variant not in VARIANTS:
    raise ValueError(f'unknown ablation {variant!r}: use one of {", ".join(VARIANTS)}')
  return ablation.apply(_base(base or 'distilbert_base'), variant)
