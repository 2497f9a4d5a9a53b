"""Model behaviour not covered by the HF parity test: logical axes, padding,
dropout statistics, bf16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistil.models import bert

CFG = bert.BertConfig(vocab_size=128, hidden_size=32, num_layers=2, num_heads=4,
                      intermediate_size=64, max_position_embeddings=32,
                      hidden_dropout=0.0, attention_dropout=0.0)


def test_every_parameter_has_logical_axes():
  axes = bert.logical_axes(CFG)
  params = bert.init(CFG, jax.random.key(0))
  assert jax.tree.structure(params) == jax.tree.structure(
      axes, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  for spec, x in zip(jax.tree.leaves(axes, is_leaf=lambda x: isinstance(
      x, jax.sharding.PartitionSpec)), jax.tree.leaves(params)):
    assert len(spec) == x.ndim and all(isinstance(n, str) for n in spec), spec
  attention = axes['encoder']['layer_0']['attention']['self']['query']
  assert tuple(attention['kernel']) == ('embed', 'heads', 'kv')
  assert tuple(axes['embeddings']['word_embeddings']['embedding']) == ('vocab',
                                                                       'embed')


def test_padding_does_not_change_real_positions():
  params = bert.init(CFG, jax.random.key(0))
  ids = jax.random.randint(jax.random.key(1), (2, 6), 104, 128)
  short = bert.apply(CFG, params, ids, jnp.ones_like(ids))
  padded_ids = jnp.concatenate([ids, jnp.zeros((2, 4), ids.dtype)], axis=1)
  mask = jnp.concatenate([jnp.ones_like(ids), jnp.zeros((2, 4), ids.dtype)], 1)
  # Junk tokens at padded positions must not matter either.
  junk = padded_ids.at[:, 6:].set(7)
  for pid in (padded_ids, junk):
    long = bert.apply(CFG, params, pid, mask)
    np.testing.assert_allclose(long.logits[:, :6], short.logits, atol=1e-5)
    np.testing.assert_allclose(long.hidden_states[-1][:, :6],
                               short.hidden_states[-1], atol=1e-5)


def test_dropout_keeps_the_expectation_and_the_rate():
  layer = bert.Dropout(0.1)
  x = jnp.ones((400, 500), jnp.float32)
  y = layer.apply({}, x, False, rngs={'dropout': jax.random.key(0)})
  kept = np.asarray(y) != 0
  # 200,000 draws: the kept fraction's standard deviation is ~0.0007.
  assert abs(kept.mean() - 0.9) < 0.004
  np.testing.assert_allclose(np.asarray(y)[kept], 65536 / (65536 - 6554), rtol=1e-6)
  assert abs(float(y.mean()) - 1.0) < 0.005
  # Odd sizes, other keys, and deterministic mode.
  z = layer.apply({}, jnp.ones((3, 7)), False, rngs={'dropout': jax.random.key(1)})
  assert z.shape == (3, 7)
  y2 = layer.apply({}, x, False, rngs={'dropout': jax.random.key(1)})
  assert not np.array_equal(np.asarray(y2), np.asarray(y))
  np.testing.assert_array_equal(layer.apply({}, x, True), x)
  # Masks from different keys, and neighbouring elements, are uncorrelated.
  a, b = (np.asarray(m).ravel() != 0 for m in (y, y2))
  assert abs(np.corrcoef(a, b)[0, 1]) < 0.01
  assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.01
  assert abs(np.corrcoef(a[:-500], a[500:])[0, 1]) < 0.01
  # Rate 0.5 and a tiny rate are honoured too.
  for rate in (0.5, 0.01):
    m = bert.Dropout(rate).apply({}, x, False, rngs={'dropout': jax.random.key(2)})
    assert abs((np.asarray(m) == 0).mean() - rate) < 0.005


def test_bfloat16_compute_is_close_to_float32():
  params = bert.init(CFG, jax.random.key(0))
  ids = jax.random.randint(jax.random.key(1), (2, 8), 104, 128)
  f32 = bert.apply(CFG, params, ids, jnp.ones_like(ids))
  bf16 = bert.apply(CFG.replace(dtype='bfloat16'), params, ids, jnp.ones_like(ids))
  assert bf16.logits.dtype == jnp.float32
  assert bf16.hidden_states[-1].dtype == jnp.bfloat16
  np.testing.assert_allclose(bf16.logits, f32.logits, atol=0.05)


def _dropout_sites(cfg):
  """The module paths of the Dropout layers one training forward pass calls."""
  import flax.linen as nn
  params = bert.init(cfg, jax.random.key(0))
  ids = jnp.ones((1, 6), jnp.int32)
  sites = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, bert.Dropout) and context.method_name == '__call__':
      sites.append('/'.join(context.module.path))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    bert.apply(cfg, params, ids, jnp.ones_like(ids), dropout_rng=jax.random.key(1))
  return sites


@pytest.mark.slow
def test_distilbert_layout_has_distilberts_dropout_sites():
  """DistilBERT's TransformerBlock drops out at the embeddings, the attention
  probabilities and the FFN output only: no dropout between the attention
  output projection (`out_lin`) and its LayerNorm, where BERT has one."""
  base = dict(vocab_size=64, hidden_size=16, num_layers=2, num_heads=2,
              intermediate_size=32, max_position_embeddings=8,
              hidden_dropout=0.1, attention_dropout=0.1)
  bert_sites = _dropout_sites(bert.BertConfig(**base))
  distil_sites = _dropout_sites(bert.BertConfig(**base, type_vocab_size=0,
                                                layout='distilbert'))
  after_attention_output = [s for s in bert_sites if '/attention/output/' in s]
  assert len(after_attention_output) == 2          # one per BERT layer
  assert not [s for s in distil_sites if '/attention/output/' in s]
  assert sorted(distil_sites) == sorted(set(bert_sites) -
                                        set(after_attention_output))
  assert len(distil_sites) == 1 + 2 * 2            # embeddings + 2 a layer
