"""The PyTorch `transformers` reference for the tests: tiny random models,
their state dicts as our params trees by hand-written tables (independent of
`jaxdistil.convert.names`), inputs with trailing padding, both models run and
compared at real positions (1e-5), and a saved `BertForMaskedLM` teacher.

Importing it needs torch and transformers: tests skip without them first
(`pytest.importorskip`), then import from here.
"""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from jaxdistil.models import bert

VOCAB, HIDDEN, LAYERS, HEADS, MLP, MAX_POS = 53, 32, 2, 4, 64, 32
BATCH, LENGTH = 4, 12
LENGTHS = (LENGTH, 7, 10, 3)      # rows 1..3 end in padding
ATOL = 1e-5


def our_config(type_vocab_size: int) -> bert.BertConfig:
  return bert.BertConfig(
      vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=LAYERS, num_heads=HEADS,
      intermediate_size=MLP, max_position_embeddings=MAX_POS,
      type_vocab_size=type_vocab_size, layer_norm_eps=1e-12, hidden_dropout=0.0,
      attention_dropout=0.0, dtype='float32')


def randomize_(model, seed: int) -> None:
  """Every parameter random (tied ones once): weights N(0, 0.2^2), embeddings
  N(0, 0.25^2), biases N(0, 0.1^2), LayerNorm weights 1 + N(0, 0.1^2).

  With these scales hidden states are O(1) and logits reach about +-5, so a 1e-5
  absolute tolerance is a few float32 ulps, not a loose bound."""
  torch.manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if re.search(r'(LayerNorm|layer_norm)\.weight$', name):
        p.copy_(1.0 + 0.1 * torch.randn_like(p))
      elif name.endswith('bias'):
        p.copy_(0.1 * torch.randn_like(p))
      elif 'embeddings' in name:
        p.copy_(0.25 * torch.randn_like(p))
      else:
        p.copy_(0.2 * torch.randn_like(p))


def state_numpy(model) -> dict:
  return {k: v.detach().cpu().numpy().astype(np.float32)
          for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------
# Conversion: HF Linear weights are [out, in], our kernels [in, out]; attention
# projections keep heads as an axis.

def _dense(sd, prefix):
  return {'kernel': sd[prefix + '.weight'].T, 'bias': sd[prefix + '.bias']}


def _qkv(sd, prefix):
  d = _dense(sd, prefix)
  return {'kernel': d['kernel'].reshape(HIDDEN, HEADS, HIDDEN // HEADS),
          'bias': d['bias'].reshape(HEADS, HIDDEN // HEADS)}


def _attn_out(sd, prefix):
  d = _dense(sd, prefix)
  return {'kernel': d['kernel'].reshape(HEADS, HIDDEN // HEADS, HIDDEN),
          'bias': d['bias']}


def _ln(sd, prefix):
  return {'scale': sd[prefix + '.weight'], 'bias': sd[prefix + '.bias']}


def _embed(sd, name):
  return {'embedding': sd[name]}


def _layer(sd, q, k, v, o, ln1, ffn_in, ffn_out, ln2):
  return {
      'attention': {
          'self': {'query': _qkv(sd, q), 'key': _qkv(sd, k), 'value': _qkv(sd, v)},
          'output': {'dense': _attn_out(sd, o), 'LayerNorm': _ln(sd, ln1)},
      },
      'intermediate': {'dense': _dense(sd, ffn_in)},
      'output': {'dense': _dense(sd, ffn_out), 'LayerNorm': _ln(sd, ln2)},
  }


def params_from_bert(sd: dict) -> dict:
  """BertForMaskedLM state_dict -> our teacher tree."""
  e = 'bert.embeddings.'
  layers = {}
  for i in range(LAYERS):
    p = f'bert.encoder.layer.{i}.'
    layers[f'layer_{i}'] = _layer(
        sd, p + 'attention.self.query', p + 'attention.self.key',
        p + 'attention.self.value', p + 'attention.output.dense',
        p + 'attention.output.LayerNorm', p + 'intermediate.dense',
        p + 'output.dense', p + 'output.LayerNorm')
  return {
      'embeddings': {
          'word_embeddings': _embed(sd, e + 'word_embeddings.weight'),
          'position_embeddings': _embed(sd, e + 'position_embeddings.weight'),
          'token_type_embeddings': _embed(sd, e + 'token_type_embeddings.weight'),
          'LayerNorm': _ln(sd, e + 'LayerNorm'),
      },
      'encoder': layers,
      'cls': {'predictions': {
          'transform': {'dense': _dense(sd, 'cls.predictions.transform.dense'),
                        'LayerNorm': _ln(sd, 'cls.predictions.transform.LayerNorm')},
          'bias': sd['cls.predictions.bias'],
      }},
  }


def params_from_distilbert(sd: dict) -> dict:
  """DistilBertForMaskedLM state_dict -> our student tree (no token types)."""
  e = 'distilbert.embeddings.'
  layers = {}
  for i in range(LAYERS):
    p = f'distilbert.transformer.layer.{i}.'
    layers[f'layer_{i}'] = _layer(
        sd, p + 'attention.q_lin', p + 'attention.k_lin', p + 'attention.v_lin',
        p + 'attention.out_lin', p + 'sa_layer_norm', p + 'ffn.lin1',
        p + 'ffn.lin2', p + 'output_layer_norm')
  return {
      'embeddings': {
          'word_embeddings': _embed(sd, e + 'word_embeddings.weight'),
          'position_embeddings': _embed(sd, e + 'position_embeddings.weight'),
          'LayerNorm': _ln(sd, e + 'LayerNorm'),
      },
      'encoder': layers,
      'cls': {'predictions': {
          'transform': {'dense': _dense(sd, 'vocab_transform'),
                        'LayerNorm': _ln(sd, 'vocab_layer_norm')},
          'bias': sd['vocab_projector.bias'],
      }},
  }


# ----------------------------------------------------------------------------
# Inputs and comparison.

def make_inputs(seed: int, with_types: bool):
  rng = np.random.default_rng(seed)
  mask = np.zeros((BATCH, LENGTH), np.int64)
  for i, n in enumerate(LENGTHS):
    mask[i, :n] = 1
  ids = rng.integers(1, VOCAB, size=(BATCH, LENGTH)) * mask      # pad id 0
  types = (rng.integers(0, 2, size=(BATCH, LENGTH)) * mask if with_types
           else np.zeros_like(ids))
  return ids, mask, types


def check_tree_matches(params, cfg):
  """The converted tree has exactly our init's structure, shapes and dtypes."""
  ref = jax.eval_shape(lambda: bert.init(cfg, jax.random.key(0)))
  assert jax.tree.structure(params) == jax.tree.structure(ref)
  got = jax.tree.map(lambda x: (x.shape, np.dtype(x.dtype)), params)
  want = jax.tree.map(lambda x: (x.shape, np.dtype(x.dtype)), ref)
  assert got == want


def compare(ours, theirs, mask, label):
  """Max abs error at real positions, per output; padding positions reported."""
  real = mask.astype(bool)
  ours_all = [np.asarray(ours.logits)] + [np.asarray(h) for h in ours.hidden_states]
  theirs_all = ([theirs.logits.detach().numpy()] +
                [h.detach().numpy() for h in theirs.hidden_states])
  assert len(ours_all) == len(theirs_all) == LAYERS + 2
  names = ['logits'] + [f'hidden_states[{i}]' for i in range(LAYERS + 1)]
  real_err, pad_err = {}, {}
  for name, a, b in zip(names, ours_all, theirs_all):
    assert a.shape == b.shape, (name, a.shape, b.shape)
    assert a.dtype == np.float32
    assert np.all(np.isfinite(b)), name
    assert np.all(np.isfinite(a)), name
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    real_err[name] = float(diff[real].max())
    pad_err[name] = float(diff[~real].max())
  print(f'{label}: max abs error at real positions: {real_err}')
  print(f'{label}: max abs error at padding positions (not asserted): {pad_err}')
  bad = {k: v for k, v in real_err.items() if not v <= ATOL}
  assert not bad, (f'{label}: outputs differ from transformers by more than '
                   f'{ATOL}: {bad}')
  # A scale check: the comparison is not vacuous (outputs are O(1)).
  assert np.abs(ours_all[0][real]).max() > 1.0
  return real_err


_apply = jax.jit(bert.apply, static_argnums=0)


def run_ours(cfg, params, ids, mask, types):
  params = jax.tree.map(jnp.asarray, params)
  return _apply(cfg, params, jnp.asarray(ids, jnp.int32),
                jnp.asarray(mask, jnp.int32), jnp.asarray(types, jnp.int32))


def run_theirs(model, attn, ids, mask, types=None):
  """The HF model in eval mode with the given attention implementation."""
  model.set_attn_implementation(attn)
  assert model.config._attn_implementation == attn
  kw = {} if types is None else {'token_type_ids': torch.from_numpy(types)}
  with torch.no_grad():
    return model(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                 output_hidden_states=True, **kw)


def save_teacher(directory, hidden=32, seed=0, vocab=128):
  """A random `BertForMaskedLM` (2 layers) saved at `directory` with a
  WordPiece vocab.txt of `vocab` pieces; returns the model."""
  cfg = transformers.BertConfig(
      vocab_size=vocab, hidden_size=hidden, num_hidden_layers=2,
      num_attention_heads=4, intermediate_size=64, max_position_embeddings=32)
  torch.manual_seed(seed)
  model = transformers.BertForMaskedLM(cfg)
  model.save_pretrained(directory)
  tokens = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + [
      f'w{i}' for i in range(vocab - 5)]
  with open(os.path.join(directory, 'vocab.txt'), 'w') as f:
    f.write('\n'.join(tokens) + '\n')
  return model
