"""The optimizer against a NumPy AdamW with the reference's schedule and clipping."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistil import optim


def test_schedule_warms_up_then_decays_linearly():
  cfg = optim.OptimConfig(learning_rate=1e-3, warmup_fraction=0.05)
  lr = optim.schedule(cfg, 200)          # 10 warm-up steps
  np.testing.assert_allclose([float(lr(s)) for s in (0, 5, 10, 105, 200)],
                             [0.0, 5e-4, 1e-3, 5e-4, 0.0], atol=1e-9)


def numpy_adamw(params, grads_seq, frozen, decays, cfg, lr_fn):
  """torch.optim.AdamW semantics (decoupled decay, bias correction), preceded by
  clipping of the trainable gradients' global norm."""
  p = {k: v.astype(np.float64).copy() for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v2 = {k: np.zeros_like(v) for k, v in p.items()}
  for t, grads in enumerate(grads_seq):
    g = {k: grads[k].astype(np.float64) for k in p if not frozen[k]}
    norm = np.sqrt(sum(np.sum(x * x) for x in g.values()))
    scale = min(1.0, cfg.clip_norm / norm)
    lr = lr_fn(t)
    for k, gk in g.items():
      gk = gk * scale
      m[k] = cfg.b1 * m[k] + (1 - cfg.b1) * gk
      v2[k] = cfg.b2 * v2[k] + (1 - cfg.b2) * gk * gk
      mhat = m[k] / (1 - cfg.b1 ** (t + 1))
      vhat = v2[k] / (1 - cfg.b2 ** (t + 1))
      update = mhat / (np.sqrt(vhat) + cfg.eps)
      if decays[k]:
        update = update + cfg.weight_decay * p[k]
      p[k] = p[k] - lr * update
  return p


def test_adamw_matches_numpy_with_clipping_decay_mask_and_frozen():
  rng = np.random.default_rng(0)
  params = {'dense': {'kernel': rng.standard_normal((4, 3)).astype(np.float32),
                      'bias': rng.standard_normal(3).astype(np.float32)},
            'LayerNorm': {'scale': np.ones(3, np.float32)},
            'position_embeddings': {'embedding':
                                    rng.standard_normal((5, 3)).astype(np.float32)}}
  frozen = jax.tree.map(lambda _: False, params)
  frozen['position_embeddings']['embedding'] = True
  cfg = optim.OptimConfig(learning_rate=1e-2, weight_decay=0.1, clip_norm=1.0,
                          warmup_fraction=0.25)
  tx = optim.make(cfg, 8, frozen)
  # Gradients large enough that clipping is active.
  grads_seq = [jax.tree.map(lambda x: (3 * rng.standard_normal(x.shape))
                            .astype(np.float32), params) for _ in range(6)]
  state, p = tx.init(params), jax.tree.map(jnp.asarray, params)
  for g in grads_seq:
    updates, state = tx.update(g, state, p)
    p = jax.tree.map(lambda a, u: a + u, p, updates)

  flat = lambda tree: {jax.tree_util.keystr(k): np.asarray(v) for k, v in
                       jax.tree_util.tree_leaves_with_path(tree)}
  decays = {k: k.endswith("['kernel']") or k.endswith("['embedding']")
            for k in flat(params)}
  lr = optim.schedule(cfg, 8)
  expected = numpy_adamw(flat(params), [flat(g) for g in grads_seq],
                         flat(frozen), decays, cfg, lambda t: float(lr(t)))
  got = flat(p)
  for k in expected:
    np.testing.assert_allclose(got[k], expected[k], rtol=1e-5, atol=1e-6,
                               err_msg=k)
  # Frozen: unchanged bit for bit, and no Adam moments kept for it.
  np.testing.assert_array_equal(got["['position_embeddings']['embedding']"],
                                params['position_embeddings']['embedding'])


def test_decay_mask_excludes_biases_and_layernorm():
  params = {'a': {'kernel': 0, 'bias': 0}, 'LayerNorm': {'scale': 0, 'bias': 0},
            'e': {'embedding': 0}}
  mask = optim.decay_mask(params)
  assert mask == {'a': {'kernel': True, 'bias': False},
                  'LayerNorm': {'scale': False, 'bias': False},
                  'e': {'embedding': True}}


def test_lr_mults_scale_a_group_like_its_own_learning_rate():
  """A group with multiplier k moves exactly as the same AdamW at k x lr
  (clipping stays joint over every trainable parameter)."""
  rng = np.random.default_rng(1)
  params = {'encoder': {'kernel': rng.standard_normal((4, 3)).astype(np.float32)},
            'cls': {'bias': rng.standard_normal(3).astype(np.float32),
                    'kernel': rng.standard_normal((3, 3)).astype(np.float32)}}
  frozen = jax.tree.map(lambda _: False, params)
  cfg = optim.OptimConfig(learning_rate=1e-3, weight_decay=0.1, clip_norm=1.0,
                          warmup_fraction=0.25, lr_mults=(('cls/.*', 20.0),))
  grads_seq = [jax.tree.map(lambda x: (3 * rng.standard_normal(x.shape))
                            .astype(np.float32), params) for _ in range(5)]

  def run(tx):
    state, p = tx.init(params), jax.tree.map(jnp.asarray, params)
    for g in grads_seq:
      updates, state = tx.update(g, state, p)
      p = jax.tree.map(lambda a, u: a + u, p, updates)
    return p

  got = run(optim.make(cfg, 8, frozen))
  flat = lambda tree: {jax.tree_util.keystr(k): np.asarray(v) for k, v in
                       jax.tree_util.tree_leaves_with_path(tree)}
  decays = {k: k.endswith("['kernel']") for k in flat(params)}
  lr = optim.schedule(cfg, 8)
  no_freeze = {k: False for k in flat(params)}
  base = numpy_adamw(flat(params), [flat(g) for g in grads_seq], no_freeze,
                     decays, cfg, lambda t: float(lr(t)))
  fast = numpy_adamw(flat(params), [flat(g) for g in grads_seq], no_freeze,
                     decays, cfg, lambda t: 20 * float(lr(t)))
  for k, v in flat(got).items():
    want = fast[k] if k.startswith("['cls']") else base[k]
    np.testing.assert_allclose(v, want, rtol=1e-5, atol=1e-6, err_msg=k)


def test_lr_mults_refuse_a_pattern_that_matches_nothing():
  frozen = {'encoder': {'kernel': False}}
  cfg = optim.OptimConfig(lr_mults=(('head/.*', 2.0),))
  try:
    optim.make(cfg, 10, frozen)
  except ValueError as e:
    assert 'head/.*' in str(e) and 'match no parameter' in str(e)
  else:
    raise AssertionError('an unmatched lr_mults pattern was accepted')
