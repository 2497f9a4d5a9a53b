"""`glue`'s defaults (`glue.defaults`): by the model's width and whether a
teacher teaches; a value given on the command line is kept; the values used
reach the result's config."""

import argparse
import json
import os

import jax
import pytest

from helpers import glue_subset
from jaxdistil.glue import __main__ as glue_cli
from jaxdistil.glue import defaults
from jaxdistil.models import bert

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLUE = os.path.join(ROOT, '..', 'shared', 'data', 'glue')
VOCAB = os.path.join(ROOT, '..', 'shared', 'data', 'vocab')


def args(**given):
  base = dict(lr=None, epochs=None, kd_temperature=None, kd_alpha=None)
  return argparse.Namespace(**{**base, **given})


def test_defaults_by_width_and_teacher():
  a = args()
  notice = defaults.fill(a, 768, distill=False)
  assert (a.lr, a.epochs) == (defaults.WIDE_LR, defaults.PLAIN_EPOCHS) == (2e-5, 3.0)
  assert notice == 'defaults for this model (hidden size 768): --lr=2e-05 --epochs=3'
  a = args()
  defaults.fill(a, 384, distill=False)
  assert a.lr == defaults.SMALL_LR > defaults.WIDE_LR
  a = args()
  notice = defaults.fill(a, 384, distill=True)
  assert (a.epochs, a.kd_temperature, a.kd_alpha) == (
      defaults.DISTILL['epochs'], defaults.DISTILL['kd_temperature'],
      defaults.DISTILL['kd_alpha'])
  assert 'with a teacher' in notice and '--kd_alpha=' in notice
  # Given values are kept, and not named.
  a = args(lr=3e-5, kd_alpha=0.25)
  notice = defaults.fill(a, 384, distill=True)
  assert a.lr == 3e-5 and a.kd_alpha == 0.25
  assert '--lr' not in notice and '--kd_alpha' not in notice
  assert defaults.fill(args(lr=1e-3, epochs=2.0, kd_temperature=1.0,
                            kd_alpha=1.0), 384, True) is None
  # A model whose width is unknown gets BERT-base's rate.
  a = args()
  defaults.fill(a, None, distill=False)
  assert a.lr == defaults.WIDE_LR


@pytest.mark.skipif(not os.path.isdir(GLUE), reason='no shared data')
def test_the_defaults_used_are_in_the_result(tmp_path, capsys):
  from jaxdistil import convert
  glue = str(tmp_path / 'glue')
  glue_subset(GLUE, glue, 'SST-2', 16, 8)
  from jaxdistil.data import tokenizer
  cfg = bert.BertConfig(vocab_size=len(tokenizer.load(VOCAB)), hidden_size=32,
                        num_layers=1, num_heads=2, intermediate_size=64,
                        max_position_embeddings=64, type_vocab_size=0,
                        layout='distilbert')
  convert.save_model(str(tmp_path / 'm'), cfg, bert.init(cfg, jax.random.key(0)),
                     'distilbert', tokenizer_dir=VOCAB)
  out = str(tmp_path / 'r.json')
  assert glue_cli.main([f'--model={tmp_path / "m"}', '--task=SST-2',
                        f'--data_dir={glue}', '--max_steps=2', '--batch_size=8',
                        '--max_len=32', '--noprogress', f'--output={out}']) == 0
  config = json.load(open(out))['tasks']['SST-2']['config']
  assert config['learning_rate'] == defaults.SMALL_LR
  assert config['epochs'] == defaults.PLAIN_EPOCHS
  assert 'defaults for this model (hidden size 32)' in capsys.readouterr().out
