"""Task distillation losses against independent NumPy (float64) references,
within 1e-6: soft KL at several T and alpha, the hard-label and padding
weights, regression, hidden-state and attention matching, gradients, and
the settings' one-line errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistil.glue import kd
from jaxdistil.glue.tasks import GlueError
from jaxdistil.models import bert

TOL = dict(rtol=1e-6, atol=1e-6)


def np_log_softmax(x):
  x = np.asarray(x, np.float64)
  m = x.max(axis=-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def np_classification(s, t, labels, w, lw, T, alpha):
  """Row by row, in float64: (total, kd, ce). The total is the weighted mean
  of each row's alpha T^2 KL + (1 - alpha) CE, or T^2 KL alone on an
  unlabelled row; kd and ce are each a weighted mean over its rows (0 when
  it has none)."""
  kd_num = kd_den = ce_num = ce_den = total = 0.0
  for i in range(len(s)):
    pt = np.exp(np_log_softmax(t[i] / T))
    kl = float(np.sum(pt * (np.log(pt) - np_log_softmax(s[i] / T))))
    kd_num += w[i] * kl
    kd_den += w[i]
    ce = -np_log_softmax(s[i])[labels[i]]
    ce_num += w[i] * lw[i] * ce
    ce_den += w[i] * lw[i]
    total += w[i] * (alpha * T * T * kl + (1 - alpha) * ce if lw[i] else T * T * kl)
  kd_term = T * T * (kd_num / kd_den if kd_den else 0.0)
  ce_term = ce_num / ce_den if ce_den else 0.0
  return total / kd_den, kd_term, ce_term


def batch(n=7, c=3, seed=0):
  rng = np.random.default_rng(seed)
  s = (rng.standard_normal((n, c)) * 3).astype(np.float32)
  t = (rng.standard_normal((n, c)) * 3).astype(np.float32)
  labels = rng.integers(0, c, n).astype(np.int32)
  return s, t, labels


@pytest.mark.parametrize('T', [0.5, 1.0, 2.0, 4.0])
@pytest.mark.parametrize('alpha', [0.0, 0.3, 0.5, 1.0])
def test_classification_matches_numpy(T, alpha):
  s, t, labels = batch()
  w = np.array([1, 1, 1, 1, 1, 0, 0], np.float32)
  lw = np.array([1, 0, 1, 1, 0, 1, 0], np.float32)
  total, parts = kd.classification_loss(s, t, labels, w, lw, temperature=T,
                                        alpha=alpha)
  want, want_kd, want_ce = np_classification(s, t, labels, w, lw, T, alpha)
  np.testing.assert_allclose(float(total), want, **TOL)
  np.testing.assert_allclose(float(parts['kd']), want_kd, **TOL)
  np.testing.assert_allclose(float(parts['ce']), want_ce, **TOL)


def test_alpha_one_ignores_labels_and_alpha_zero_is_plain_ce():
  s, t, labels = batch()
  w = np.ones(7, np.float32)
  a = kd.classification_loss(s, t, labels, w, temperature=2.0, alpha=1.0)[0]
  b = kd.classification_loss(s, t, (labels + 1) % 3, w, temperature=2.0,
                             alpha=1.0)[0]
  assert float(a) == float(b)
  plain = kd.classification_loss(s, t, labels, w, temperature=2.0, alpha=0.0)[0]
  other_teacher = kd.classification_loss(s, -t, labels, w, temperature=2.0,
                                         alpha=0.0)[0]
  ce = -np.mean([np_log_softmax(s[i])[labels[i]] for i in range(7)])
  np.testing.assert_allclose(float(plain), ce, **TOL)
  assert float(plain) == float(other_teacher)


def test_zero_weight_rows_change_nothing():
  s, t, labels = batch()
  w = np.array([1, 1, 1, 1, 0, 0, 0], np.float32)
  full = kd.classification_loss(s, t, labels, w, temperature=2.0, alpha=0.5)[0]
  only = kd.classification_loss(s[:4], t[:4], labels[:4], w[:4],
                                temperature=2.0, alpha=0.5)[0]
  np.testing.assert_allclose(float(full), float(only), **TOL)
  # Even garbage (inf, NaN) in a padding row changes nothing.
  s2, t2 = s.copy(), t.copy()
  s2[5], t2[6] = np.inf, np.nan
  junk = kd.classification_loss(s2, t2, labels, w, temperature=2.0, alpha=0.5)[0]
  assert float(junk) == float(full)


def test_unlabelled_rows_contribute_only_kd():
  s, t, labels = batch()
  w = np.ones(7, np.float32)
  lw = np.array([1, 1, 1, 0, 0, 0, 0], np.float32)
  _, parts = kd.classification_loss(s, t, labels, w, lw, temperature=3.0,
                                    alpha=0.4)
  # ce only over the labelled rows; kd over all rows.
  np.testing.assert_allclose(float(parts['ce']), float(kd.classification_loss(
      s[:3], t[:3], labels[:3], w[:3], temperature=3.0, alpha=0.4)[1]['ce']),
      **TOL)
  np.testing.assert_allclose(float(parts['kd']), float(kd.classification_loss(
      s, t, labels, w, temperature=3.0, alpha=0.4)[1]['kd']), **TOL)
  # changing an unlabelled row's label changes nothing
  labels2 = labels.copy()
  labels2[4:] = (labels2[4:] + 1) % 3
  a = kd.classification_loss(s, t, labels, w, lw, temperature=3.0, alpha=0.4)[0]
  b = kd.classification_loss(s, t, labels2, w, lw, temperature=3.0, alpha=0.4)[0]
  assert float(a) == float(b)
  # no labelled row at all: ce is exactly 0 (no 0/0), the total kd alone
  total, parts = kd.classification_loss(s, t, labels, w, np.zeros(7, np.float32),
                                        temperature=3.0, alpha=0.4)
  assert float(parts['ce']) == 0.0
  want = np_classification(s, t, labels, w, np.zeros(7), 3.0, 0.4)[0]
  np.testing.assert_allclose(float(total), want, **TOL)
  grads = jax.grad(lambda x: kd.classification_loss(
      x, t, labels, w, np.zeros(7, np.float32), temperature=3.0, alpha=0.4)[0])(s)
  assert np.all(np.isfinite(grads))


@pytest.mark.parametrize('alpha', [0.5, 0.9])
def test_every_row_counts_once_whatever_the_batch_holds(alpha):
  """With a transfer set, a batch of 1 labelled and 20 unlabelled rows: the
  loss is the mean of each row's loss taken alone, so the labelled row
  weighs 1/21 of it (the old form gave its CE (1 - alpha) of the whole loss:
  about 16x a transfer row at N = 20, alpha = 0.5)."""
  rng = np.random.default_rng(5)
  s = (rng.standard_normal((21, 2)) * 2).astype(np.float32)
  t = (rng.standard_normal((21, 2)) * 2).astype(np.float32)
  labels = rng.integers(0, 2, 21).astype(np.int32)
  w = np.ones(21, np.float32)
  lw = np.zeros(21, np.float32)
  lw[0] = 1
  total = kd.classification_loss(s, t, labels, w, lw, temperature=2.0,
                                 alpha=alpha)[0]
  alone = [float(kd.classification_loss(s[i:i + 1], t[i:i + 1], labels[i:i + 1],
                                        w[:1], lw[i:i + 1], temperature=2.0,
                                        alpha=alpha)[0]) for i in range(21)]
  np.testing.assert_allclose(float(total), np.mean(alone), **TOL)
  # A transfer row alone is taught by the teacher alone (alpha = 1 there).
  np.testing.assert_allclose(alone[1], float(kd.classification_loss(
      s[1:2], t[1:2], labels[1:2], w[:1], temperature=2.0, alpha=1.0)[0]), **TOL)


def test_regression_matches_numpy():
  rng = np.random.default_rng(1)
  s = rng.standard_normal((6, 1)).astype(np.float32) * 2
  t = rng.standard_normal((6, 1)).astype(np.float32) * 2
  y = rng.uniform(0, 5, 6).astype(np.float32)
  w = np.array([1, 1, 1, 1, 1, 0], np.float32)
  lw = np.array([1, 1, 0, 1, 0, 1], np.float32)
  s64, t64, y64 = (np.asarray(a, np.float64).reshape(-1) for a in (s, t, y))
  want_kd = np.sum(w * (s64 - t64) ** 2) / np.sum(w)
  want_mse = np.sum(w * lw * (s64 - y64) ** 2) / np.sum(w * lw)
  for beta in (0.0, 0.25, 1.0):
    total, parts = kd.regression_loss(s, t, y, w, lw, beta=beta)
    np.testing.assert_allclose(float(parts['kd']), want_kd, **TOL)
    np.testing.assert_allclose(float(parts['mse_label']), want_mse, **TOL)
    # Each row's own loss: the mix on a labelled row, the teacher's term alone
    # on an unlabelled one; their weighted mean.
    rows = np.where(lw > 0, beta * (s64 - t64) ** 2 + (1 - beta) * (s64 - y64) ** 2,
                    (s64 - t64) ** 2)
    np.testing.assert_allclose(float(total), np.sum(w * rows) / np.sum(w), **TOL)
  via = kd.task_loss(s, t, y, w, lw, True, beta=0.25)[0]
  assert float(via) == float(kd.regression_loss(s, t, y, w, lw, beta=0.25)[0])


def test_gradients_are_finite_and_match_numpy():
  s, t, labels = batch()
  w = np.array([1, 1, 1, 1, 1, 1, 0], np.float32)
  T, alpha = 2.0, 0.5
  g = np.asarray(jax.grad(lambda x: kd.classification_loss(
      x, t, labels, w, temperature=T, alpha=alpha)[0])(s))
  assert np.all(np.isfinite(g))
  # d/ds: alpha T (p_s^T - p_t^T) / n + (1 - alpha) (p_s - onehot) / n
  n = w.sum()
  ps_T = np.exp(np_log_softmax(s / T))
  pt_T = np.exp(np_log_softmax(t / T))
  onehot = np.eye(3)[labels]
  want = (alpha * T * (ps_T - pt_T) + (1 - alpha) *
          (np.exp(np_log_softmax(s)) - onehot)) * w[:, None] / n
  np.testing.assert_allclose(g, want, **TOL)
  # the teacher gets no gradient
  gt = jax.grad(lambda x: kd.classification_loss(
      s, x, labels, w, temperature=T, alpha=alpha)[0])(t)
  assert not np.any(np.asarray(gt))


def test_uniform_layer_map():
  assert kd.uniform_layer_map(6, 12) == (0, 2, 4, 6, 8, 10, 12)
  assert kd.uniform_layer_map(4, 12) == (0, 3, 6, 9, 12)
  assert kd.uniform_layer_map(3, 4) == (0, 1, 2, 4)
  assert kd.uniform_layer_map(2, 2) == (0, 1, 2)
  with pytest.raises(GlueError):
    kd.uniform_layer_map(0, 12)


def np_hidden_mse(sh, th, mask, layer_map, proj=None, w=None):
  tok = np.asarray(mask, np.float64) * (1.0 if w is None else
                                        np.asarray(w, np.float64)[:, None])
  out = []
  for i, j in enumerate(layer_map):
    s = np.asarray(sh[i], np.float64)
    if proj is not None:
      s = s @ np.asarray(proj['kernel'], np.float64) + np.asarray(proj['bias'],
                                                                   np.float64)
    per_tok = ((s - np.asarray(th[j], np.float64)) ** 2).mean(-1)
    out.append((per_tok * tok).sum() / tok.sum())
  return sum(out), np.array(out)


def test_hidden_mse_with_a_layer_map_and_projection():
  rng = np.random.default_rng(2)
  B, L, Hs, Ht = 3, 5, 4, 6
  sh = [rng.standard_normal((B, L, Hs)).astype(np.float32) for _ in range(3)]
  th = [rng.standard_normal((B, L, Ht)).astype(np.float32) for _ in range(5)]
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], np.int32)
  w = np.array([1, 1, 0], np.float32)
  layer_map = kd.uniform_layer_map(2, 4)
  proj = jax.device_get(kd.init_projection(Hs, Ht, jax.random.key(0), std=0.5))
  proj['bias'] = rng.standard_normal(Ht).astype(np.float32)
  total, per = kd.hidden_mse(sh, th, mask, layer_map, proj, w)
  want, want_per = np_hidden_mse(sh, th, mask, layer_map, proj, w)
  np.testing.assert_allclose(float(total), want, **TOL)
  np.testing.assert_allclose(np.asarray(per), want_per, **TOL)
  # same widths, no projection; padding tokens' values do not matter
  sh2 = [rng.standard_normal((B, L, Ht)).astype(np.float32) for _ in range(3)]
  total, _ = kd.hidden_mse(sh2, th, mask, layer_map)
  np.testing.assert_allclose(float(total), np_hidden_mse(sh2, th, mask,
                                                         layer_map)[0], **TOL)
  sh3 = [x.copy() for x in sh2]
  sh3[1][0, 4] = 1e3
  assert float(kd.hidden_mse(sh3, th, mask, layer_map)[0]) == float(total)
  g = jax.grad(lambda p: kd.hidden_mse(sh, th, mask, layer_map, p, w)[0])(proj)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))
  with pytest.raises(GlueError, match='projection'):
    kd.hidden_mse(sh, th, mask, layer_map)
  with pytest.raises(GlueError, match='layer map'):
    kd.hidden_mse(sh, th, mask, (0, 2, 5))


def test_attention_scores_are_the_layers_own():
  """The recomputed scores equal q.k / sqrt(d) from the query and key
  projections the model itself computed (Flax's captured intermediates)."""
  cfg = bert.BertConfig(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2,
                        intermediate_size=32, max_position_embeddings=16)
  params = bert.init(cfg, jax.random.key(0))
  rng = np.random.default_rng(3)
  ids = rng.integers(0, 50, (2, 7)).astype(np.int32)
  mask = np.array([[1] * 7, [1] * 4 + [0] * 3], np.int32)
  out = bert.apply(cfg, params, ids, mask)
  zeros = np.zeros_like(ids)
  _, inter = bert.MaskedLM(cfg).apply(
      {'params': params}, ids, mask, zeros,
      np.broadcast_to(np.arange(7), ids.shape), None, True,
      capture_intermediates=True, mutable=['intermediates'])
  for layer in range(cfg.num_layers):
    mods = inter['intermediates']['encoder'][f'layer_{layer}']['attention']['self']
    q = np.asarray(mods['query']['__call__'][0], np.float64)
    k = np.asarray(mods['key']['__call__'][0], np.float64)
    want = np.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(cfg.head_dim)
    got = kd.attention_scores(cfg, params, out.hidden_states[layer], layer)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_attention_mse_matches_numpy():
  rng = np.random.default_rng(4)
  B, H, L = 2, 3, 4
  s = [rng.standard_normal((B, H, L, L)).astype(np.float32) for _ in range(2)]
  t = [rng.standard_normal((B, H, L, L)).astype(np.float32) for _ in range(2)]
  mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.int32)
  total, per = kd.attention_mse(s, t, mask)
  want = []
  for a, b in zip(s, t):
    num = den = 0.0
    for i in range(B):
      n = int(mask[i].sum())
      d = (np.asarray(a[i], np.float64) - b[i])[:, :n, :n] ** 2
      num += d.sum()
      den += d.size
    want.append(num / den)
  np.testing.assert_allclose(np.asarray(per), want, **TOL)
  np.testing.assert_allclose(float(total), sum(want), **TOL)
  with pytest.raises(GlueError, match='heads'):
    kd.attention_mse([s[0][:, :2]], [t[0]], mask)


@pytest.mark.parametrize('args, flag', [
    ((0.0, 0.5, 0.5), '--kd_temperature'), ((-1.0, 0.5, 0.5), '--kd_temperature'),
    ((float('nan'), 0.5, 0.5), '--kd_temperature'),
    ((2.0, 1.5, 0.5), '--kd_alpha'), ((2.0, -0.1, 0.5), '--kd_alpha'),
    ((2.0, 0.5, 2.0), '--kd_beta'), ((2.0, 0.5, -1e-3), '--kd_beta')])
def test_bad_settings_are_one_line(args, flag):
  with pytest.raises(GlueError) as e:
    kd.check_settings(*args)
  message = str(e.value)
  assert '\n' not in message and message.startswith(flag)
  assert ('> 0' if flag == '--kd_temperature' else '[0, 1]') in message
  kd.check_settings(2.0, 0.0, 1.0)     # the edges are fine


def test_losses_run_under_jit_as_the_train_step_will():
  import functools
  s, t, labels = batch()
  w = np.array([1, 1, 1, 1, 1, 1, 0], np.float32)
  lw = np.array([1, 0, 1, 0, 1, 0, 1], np.float32)
  loss = functools.partial(kd.task_loss, regression=False, temperature=2.0,
                           alpha=0.7)
  eager, parts = loss(s, t, labels, w, lw)
  jitted, jparts = jax.jit(loss)(s, t, labels, w, lw)
  want = np_classification(s, t, labels, w, lw, 2.0, 0.7)
  np.testing.assert_allclose(float(jitted), want[0], **TOL)
  np.testing.assert_allclose(float(jitted), float(eager), **TOL)
  assert set(jparts) == set(parts) == {'kd', 'ce'}
