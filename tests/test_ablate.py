"""`ablate`: the table-4 variants as edits of a config (`replicate` trains
them), and the command that is gone, in one line."""

import pytest

from helpers import tiny_config
from jaxdistil import ablate


def test_each_variant_changes_only_its_part_of_the_config():
  base = tiny_config()
  changed = {v: ablate.apply(base.copy_and_resolve_references(), v)
             for v in ablate.KNOWN}
  assert changed['full'].to_dict() == base.to_dict()
  assert changed['no_ce'].loss.alpha_ce == 0.0 and changed['no_ce'].loss.alpha_cos > 0
  assert changed['no_cos'].loss.alpha_cos == 0.0 and changed['no_cos'].loss.alpha_ce > 0
  assert changed['no_mlm'].loss.alpha_mlm == 0.0
  assert (changed['mlm_only'].loss.alpha_ce, changed['mlm_only'].loss.alpha_cos) == (0, 0)
  assert changed['mlm_only'].loss.alpha_mlm > 0
  init = changed['random_init'].student_init
  assert (init.source, init.random_positions, init.freeze_position_embeddings) == (
      'random', 'sinusoidal', True)
  assert changed['random_init'].loss.to_dict() == base.loss.to_dict()
  assert set(ablate.PAPER_TABLE4) == set(ablate.VARIANTS) - {'full'}


def test_an_unknown_variant_is_named():
  with pytest.raises(ValueError, match="unknown ablation 'no_kd'"):
    ablate.apply(tiny_config(), 'no_kd')


def test_the_command_points_to_replicate(capsys):
  assert ablate.main(['--config=configs/tiny.py']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'python -m jaxdistil.replicate' in err[0]
