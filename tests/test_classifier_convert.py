"""Sequence classifiers in and out of Hugging Face, against `transformers`.

Each of the four `*ForSequenceClassification` classes is made tiny, with every
parameter random (`randomize_`), saved by `save_pretrained`, imported with its
head and labels, and scored by our encoder + head on padded rows: logits within
1e-5 (max abs, float32) of `transformers`'. Exported again, every tensor comes
back bit for bit and `AutoModelForSequenceClassification` loads the same class
with the same label names.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from helpers.classifiers import (LABELS, hf_classifier, rows,  # noqa: E402
                                 their_logits)
from helpers.parity import state_numpy  # noqa: E402
from jaxdistil import convert  # noqa: E402
from jaxdistil.convert import ConvertError  # noqa: E402
from jaxdistil.convert import classifier as classifier_lib  # noqa: E402
from jaxdistil.convert.__main__ import main as convert_main  # noqa: E402
from jaxdistil.glue import finetune, heads  # noqa: E402

ATOL = 1e-5


def our_logits(loaded, ids, mask, types):
  cfg = loaded.config.replace(hidden_dropout=0.0, attention_dropout=0.0)
  encoder, rest, _ = heads.split_encoder_params(cfg, loaded.params)
  batch = {'input_ids': jnp.asarray(ids), 'attention_mask': jnp.asarray(mask),
           'token_type_ids': jnp.asarray(types if cfg.type_vocab_size else
                                         np.zeros_like(types))}
  return np.asarray(finetune.forward(
      cfg, {'encoder': encoder, 'head': loaded.head}, rest, batch, 0.0))


LAYOUTS = ['bert', 'distilbert', 'roberta',
           pytest.param('xlm-roberta', marks=pytest.mark.slow)]


@pytest.mark.parametrize('layout', LAYOUTS)
def test_an_hf_classifier_imports_with_its_head_and_labels(layout, tmp_path):
  model = hf_classifier(layout)
  d = str(tmp_path / 'hf')
  model.save_pretrained(d)
  loaded = convert.load_model(d)
  assert loaded.classifier.labels == LABELS
  assert loaded.classifier.problem_type == classifier_lib.SINGLE_LABEL
  assert not loaded.warnings                 # no MLM head is no news here
  ids, mask, types = rows(layout)
  np.testing.assert_allclose(our_logits(loaded, ids, mask, types),
                             their_logits(model, layout, ids, mask, types),
                             atol=ATOL, rtol=0)


@pytest.mark.parametrize('layout', LAYOUTS)
def test_import_then_export_gives_the_same_classifier_bit_for_bit(layout, tmp_path):
  model = hf_classifier(layout, seed=3)
  d, ours, back = (str(tmp_path / n) for n in ('hf', 'ours', 'back'))
  model.save_pretrained(d)
  assert convert_main(['import', f'--hf={d}', f'--output={ours}']) == 0
  assert convert_main(['export', f'--checkpoint={ours}', f'--output={back}']) == 0
  again = transformers.AutoModelForSequenceClassification.from_pretrained(back)
  assert type(again) is type(model)
  assert again.config.id2label == model.config.id2label
  want, got = state_numpy(model), state_numpy(again)
  assert set(got) == set(want)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_a_regression_head_and_generic_labels(tmp_path):
  model = hf_classifier('distilbert', num_labels=1, labels=None,
                        problem_type='regression')
  d = str(tmp_path / 'hf')
  model.save_pretrained(d)
  loaded = convert.load_model(d)
  assert loaded.classifier.is_regression and loaded.classifier.generic
  ids, mask, types = rows('distilbert', 1)
  np.testing.assert_allclose(our_logits(loaded, ids, mask, types),
                             their_logits(model, 'distilbert', ids, mask, types),
                             atol=ATOL, rtol=0)
  out = str(tmp_path / 'out')
  convert.export(loaded.config, loaded.params, out, head=loaded.head,
                 classifier=loaded.classifier, tokenizer_dir=None)
  again = transformers.AutoModelForSequenceClassification.from_pretrained(out)
  assert again.config.problem_type == 'regression'
  assert again.config.num_labels == 1


def test_a_model_directory_keeps_the_head_and_labels(tmp_path):
  model = hf_classifier('bert', seed=4)
  d = str(tmp_path / 'hf')
  model.save_pretrained(d)
  loaded = convert.load_model(d)
  out = str(tmp_path / 'ours')
  convert.save_model(out, loaded.config, loaded.params, loaded.layout,
                     pooler=loaded.pooler, head=loaded.head,
                     classifier=loaded.classifier)
  again = convert.load_model(out)
  assert again.classifier == loaded.classifier
  flat = lambda t: {jax.tree_util.keystr(p): np.asarray(x) for p, x in
                    jax.tree_util.tree_leaves_with_path(t)}
  a, b = flat(loaded.head), flat(again.head)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_a_head_of_another_layout_is_refused_in_one_line(tmp_path):
  loaded = convert.load_model(_saved(hf_classifier('distilbert'), tmp_path))
  with pytest.raises(ConvertError, match='cannot be written as Bert') as e:
    convert.export(loaded.config, loaded.params, str(tmp_path / 'x'),
                   layout='bert', head=loaded.head, classifier=loaded.classifier)
  assert '\n' not in str(e.value)


def test_an_incomplete_head_is_refused_in_one_line(tmp_path):
  from safetensors.numpy import load_file, save_file
  d = _saved(hf_classifier('distilbert'), tmp_path)
  path = os.path.join(d, 'model.safetensors')
  tensors = load_file(path)
  del tensors['pre_classifier.bias']
  save_file(tensors, path, metadata={'format': 'pt'})
  with pytest.raises(ConvertError, match='head is incomplete.*pre_classifier.bias'):
    convert.load_model(d)


def _saved(model, tmp_path) -> str:
  d = str(tmp_path / 'saved')
  model.save_pretrained(d)
  return d
