"""The Flax encoder against Hugging Face `transformers` (PyTorch), in float32.

Two tiny models with random weights (every parameter, LayerNorms and biases
included, so that no mapping error can hide behind a default of ones or zeros) are
converted into our params tree by the tables below, and run on random ids with
trailing padding:

(a) the teacher layout: `BertForMaskedLM` (token-type embeddings, random types);
(b) the student layout: `DistilBertForMaskedLM` (`type_vocab_size=0`).

The logits and every hidden state (the embedding output and each layer's output)
must agree to 1e-5 in max abs error at the real (non-padding) positions, against
HF's eager and SDPA attention in float32 and against the same model in float64
(which isolates our own float32 round-off). Run with -s to see the errors.
The hand-written name tables and the runs of both are `helpers.parity`.
"""

import copy

import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from helpers.parity import (HEADS, HIDDEN, LAYERS, MAX_POS, MLP,  # noqa: E402
                            VOCAB, check_tree_matches, compare, make_inputs,
                            our_config, params_from_bert,
                            params_from_distilbert, randomize_, run_ours,
                            run_theirs, state_numpy)


# ----------------------------------------------------------------------------

def test_teacher_matches_bert_for_masked_lm():
  hf_cfg = transformers.BertConfig(
      vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
      num_attention_heads=HEADS, intermediate_size=MLP,
      max_position_embeddings=MAX_POS, type_vocab_size=2, hidden_act='gelu',
      layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
      attention_probs_dropout_prob=0.0)
  model = transformers.BertForMaskedLM(hf_cfg)
  randomize_(model, seed=0)
  model.eval()
  sd = state_numpy(model)
  # The decoder is tied to the word embeddings and its bias to cls.predictions.bias.
  np.testing.assert_array_equal(sd['cls.predictions.decoder.weight'],
                                sd['bert.embeddings.word_embeddings.weight'])
  np.testing.assert_array_equal(sd['cls.predictions.decoder.bias'],
                                sd['cls.predictions.bias'])

  cfg = our_config(type_vocab_size=2)
  params = params_from_bert(sd)
  check_tree_matches(params, cfg)

  ids, mask, types = make_inputs(seed=1, with_types=True)
  assert types.max() == 1                   # both segment types are exercised
  ours = run_ours(cfg, params, ids, mask, types)
  for attn in ('eager', 'sdpa'):
    compare(ours, run_theirs(model, attn, ids, mask, types), mask, f'bert/{attn}')
  # Against the same model in float64: our float32 error alone.
  compare(ours, run_theirs(copy.deepcopy(model).double(), 'eager', ids, mask,
                           types), mask, 'bert/float64')
  # The token types matter in this layout (so the check above exercises them).
  other = run_ours(cfg, params, ids, mask, np.zeros_like(types))
  assert np.abs(np.asarray(other.logits) - np.asarray(ours.logits)).max() > 1e-3


def test_student_matches_distilbert_for_masked_lm():
  hf_cfg = transformers.DistilBertConfig(
      vocab_size=VOCAB, dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS,
      hidden_dim=MLP, max_position_embeddings=MAX_POS, activation='gelu',
      dropout=0.0, attention_dropout=0.0, sinusoidal_pos_embds=False)
  model = transformers.DistilBertForMaskedLM(hf_cfg)
  randomize_(model, seed=2)
  model.eval()
  sd = state_numpy(model)
  np.testing.assert_array_equal(sd['vocab_projector.weight'],
                                sd['distilbert.embeddings.word_embeddings.weight'])
  assert not any('token_type' in k for k in sd)

  cfg = our_config(type_vocab_size=0)
  params = params_from_distilbert(sd)
  check_tree_matches(params, cfg)

  ids, mask, _ = make_inputs(seed=3, with_types=False)
  ours = run_ours(cfg, params, ids, mask, np.zeros_like(ids))
  for attn in ('eager', 'sdpa'):
    compare(ours, run_theirs(model, attn, ids, mask), mask, f'distilbert/{attn}')
  compare(ours, run_theirs(copy.deepcopy(model).double(), 'eager', ids, mask),
          mask, 'distilbert/float64')
  # A DistilBERT layout ignores token types: any ids give the same outputs.
  ours_types = run_ours(cfg, params, ids, mask, np.ones_like(ids))
  np.testing.assert_array_equal(np.asarray(ours.logits),
                                np.asarray(ours_types.logits))
