"""Attention kernels and rematerialisation (issue 16), on a CPU.

- `resolve`: which kernel runs where, and one line for a choice that cannot.
- Splash attention in Pallas interpret mode against the XLA path, in float32,
  on padded and on packed rows: logits and every hidden state within 1e-5 at
  the real positions, and (slow) the gradients of a masked loss within 1e-5
  relative (interpret mode runs the kernel's own forward and backward).
- cuDNN cannot run without an NVIDIA GPU: its test skips here; its mask (each
  query sees its own segment) is checked through `attention.reference`.
- remat 'dots' and 'full' give the parameters' gradients of 'none', bit for
  bit or within float32 round-off, with dropout on.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistil import config_lib
from jaxdistil.models import attention, bert
from helpers import tiny_config

L = 128                      # splash's block: rows are a multiple of 128


def cfg(**kw):
  base = dict(vocab_size=97, hidden_size=64, num_layers=2, num_heads=2,
              intermediate_size=96, max_position_embeddings=L, type_vocab_size=0,
              hidden_dropout=0.0, attention_dropout=0.0, layout='distilbert')
  base.update(kw)
  return bert.BertConfig(**base)


def padded_rows(seed=0, lengths=(L, 70, 101)):
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, 97, size=(len(lengths), L)).astype(np.int32)
  mask = np.zeros_like(ids)
  for r, n in enumerate(lengths):
    mask[r, :n] = 1
    ids[r, n:] = 0
  return ids, mask


def rows_of(kind):
  """(ids, attention mask, segment ids or None) of `kind`: padded or packed."""
  if kind == 'padded':
    return padded_rows() + (None,)
  return packed_rows()


def packed_rows(seed=1):
  ids, _ = padded_rows(seed, (L, L))
  seg = np.zeros_like(ids)
  seg[0, :40], seg[0, 40:90], seg[0, 90:120] = 1, 2, 3
  seg[1, :64], seg[1, 64:] = 1, 2
  ids[seg == 0] = 0
  return ids, (seg > 0).astype(np.int32), seg


# ----------------------------------------------------------------------------
# resolve

@pytest.mark.parametrize('kind,kw,want', [
    ('xla', {}, ('xla', None)),
    ('auto', {}, ('xla', None)),                                # a CPU
    ('auto', {'backend': 'tpu'}, ('splash', None)),
    ('auto', {'backend': 'tpu', 'dropout': 0.1}, ('xla', 'attention dropout')),
    ('auto', {'backend': 'tpu', 'max_len': 200}, ('xla', 'multiple of 128')),
    ('auto', {'backend': 'gpu', 'dtype': 'bfloat16'}, ('cudnn', None)),
    ('auto', {'backend': 'gpu'}, ('xla', 'set dtype=bfloat16')),
    ('splash', {'interpret': True}, ('splash', None)),
    ('cudnn', {'backend': 'gpu', 'dtype': 'bfloat16'}, ('cudnn', None)),
])
def test_resolve_picks_the_kernel_and_says_why_auto_fell_back(kind, kw, want):
  args = dict(head_dim=64, dtype='float32', dropout=0.0, max_len=L)
  args.update(kw)
  got = attention.resolve(kind, **args)
  assert got[0] == want[0]
  assert (got[1] is None) == (want[1] is None)
  if want[1]:
    assert want[1] in got[1] and '\n' not in got[1]


@pytest.mark.parametrize('kind,kw,words', [
    ('splash', {}, "'splash' cannot run: it is a TPU kernel (this backend is cpu); use 'xla' or 'auto'"),
    ('splash', {'backend': 'tpu', 'dropout': 0.1}, 'set its attention_dropout to 0'),
    ('cudnn', {}, "'cudnn' cannot run: it needs an NVIDIA GPU (this backend is cpu)"),
    ('cudnn', {'backend': 'gpu', 'dtype': 'bfloat16', 'head_dim': 160}, 'head dim 160'),
    ('flash', {}, "model.attention='flash' is not one of xla, splash, cudnn, auto"),
])
def test_a_kernel_that_cannot_run_is_one_line(kind, kw, words):
  args = dict(head_dim=64, dtype='float32', dropout=0.0, max_len=L)
  args.update(kw)
  with pytest.raises(attention.AttentionError) as e:
    attention.resolve(kind, **args)
  assert words in str(e.value) and '\n' not in str(e.value)


def test_the_config_resolves_each_model_and_refuses_bad_values():
  c = tiny_config(**{'max_len': L, 'model.teacher.max_position_embeddings': L,
                     'model.attention': 'auto'})
  assert config_lib.teacher_config(c).attention == 'xla'          # a CPU
  c.model.attention, c.model.pallas_interpret = 'splash', True
  c.model.student.attention_dropout = 0.0
  assert config_lib.teacher_config(c).attention == 'splash'
  assert config_lib.student_config(c).attention == 'splash'
  c.model.student.attention_dropout = 0.1
  with pytest.raises(config_lib.ConfigError, match='attention_dropout to 0'):
    config_lib.student_config(c)
  c = tiny_config(**{'model.remat': 'some'})
  with pytest.raises(config_lib.ConfigError, match="model.remat='some' is not one "
                                                   "of none, dots, full"):
    config_lib.validate(c, 1, (1, 1, 1))


# ----------------------------------------------------------------------------
# splash (interpret mode) against XLA

def run(c, params, ids, mask, seg=None):
  out = bert.apply(c, params, jnp.asarray(ids), jnp.asarray(mask),
                   segment_ids=None if seg is None else jnp.asarray(seg))
  return [np.asarray(h) for h in out.hidden_states] + [np.asarray(out.logits)]


@pytest.mark.parametrize('rows', [pytest.param('padded', marks=pytest.mark.slow),
                                  'packed'])
def test_splash_matches_xla(rows):
  xla = cfg()
  splash = xla.replace(attention='splash', pallas_interpret=True)
  params = bert.init(xla, jax.random.key(0))
  ids, mask, seg = rows_of(rows)
  real = mask.astype(bool)
  for a, b in zip(run(xla, params, ids, mask, seg), run(splash, params, ids, mask, seg)):
    err = np.abs(a - b)[real].max()
    assert err < 1e-5, err


def masked_loss(c, params, ids, mask, seg):
  out = bert.apply(c, params, ids, mask,
                   segment_ids=None if seg is None else seg)
  logp = jax.nn.log_softmax(out.logits, -1)
  picked = jnp.take_along_axis(logp, ids[..., None], -1)[..., 0]
  return -(picked * mask).sum() / mask.sum()


@pytest.mark.slow
@pytest.mark.parametrize('rows', ['padded', 'packed'])
def test_splash_gradients_match_xla(rows):
  xla = cfg()
  splash = xla.replace(attention='splash', pallas_interpret=True)
  params = bert.init(xla, jax.random.key(0))
  ids, mask, seg = rows_of(rows)
  args = [jnp.asarray(x) for x in (ids, mask)] + [None if seg is None else jnp.asarray(seg)]
  g_xla = jax.grad(lambda p: masked_loss(xla, p, *args))(params)
  g_splash = jax.grad(lambda p: masked_loss(splash, p, *args))(params)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_xla),
                          jax.tree.leaves(g_splash)):
    scale = max(float(np.abs(a).max()), 1e-6)
    err = float(np.abs(np.asarray(a) - np.asarray(b)).max()) / scale
    assert err < 1e-5, (jax.tree_util.keystr(path), err)


def test_the_kernels_mask_is_each_segments_own():
  """`attention.reference` (what splash and cuDNN compute) equals the XLA
  path's attention at every real position, padded and packed."""
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.standard_normal((2, L, 2, 16)), jnp.float32)
             for _ in range(3))
  for ids, mask, seg in (padded_rows()[:2] + (None,), packed_rows()):
    ids, mask = ids[:2], mask[:2]
    seg = None if seg is None else seg[:2]
    segments = attention.segments_of(jnp.asarray(mask), None if seg is None
                                     else jnp.asarray(seg))
    bias = bert.attention_bias_of(jnp.asarray(mask), None if seg is None
                                  else jnp.asarray(seg))
    scores = jnp.einsum('bqhd,bkhd->bhqk', q, k) + bias
    want = jnp.einsum('bhqk,bkhd->bqhd', jax.nn.softmax(scores, -1), v)
    got = attention.reference(q, k, v, segments)
    real = mask.astype(bool)
    assert float(jnp.abs(got - want)[real].max()) < 1e-5


@pytest.mark.skipif(jax.default_backend() != 'gpu',
                    reason='cuDNN fused attention needs an NVIDIA GPU; this '
                           'backend cannot run it (its mask is tested above)')
def test_cudnn_matches_xla_on_a_gpu():
  xla = cfg(dtype='bfloat16')
  fused = xla.replace(attention='cudnn')
  params = bert.init(xla, jax.random.key(0))
  for ids, mask, seg in (padded_rows() + (None,), packed_rows()):
    real = mask.astype(bool)
    for a, b in zip(run(xla, params, ids, mask, seg), run(fused, params, ids, mask, seg)):
      assert np.abs(a.astype(np.float32) - b.astype(np.float32))[real].max() < 2e-2


# ----------------------------------------------------------------------------
# remat

@pytest.mark.parametrize('remat', ['full', pytest.param('dots', marks=pytest.mark.slow)])
def test_remat_keeps_parameters_and_gradients(remat):
  base = cfg(hidden_dropout=0.1, attention_dropout=0.1, num_layers=3)
  params = bert.init(base, jax.random.key(0))
  ids, mask = padded_rows()
  ids, mask = jnp.asarray(ids[:, :32]), jnp.asarray(mask[:, :32])

  def grads(remat):
    c = base.replace(remat=remat)
    assert jax.tree.structure(bert.init(c, jax.random.key(0))) == \
        jax.tree.structure(params)
    def loss(p):
      out = bert.apply(c, p, ids, mask, dropout_rng=jax.random.key(7))
      return (out.logits.astype(jnp.float32) ** 2 * mask[..., None]).mean()
    return jax.jit(jax.grad(loss))(params)

  want, got = grads('none'), grads(remat)
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5,
                               atol=1e-7, err_msg=remat)
