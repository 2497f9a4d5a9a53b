"""The distillation losses against independent float64 NumPy versions.

Every loss returns a (sum, count) pair; here each is recomputed from its definition
in NumPy (float64) on random inputs with padding, and compared with the float32 JAX
value at rtol 1e-5. The token weights, the counts, the weighted total and the
teacher-free path of `losses.terms` are checked the same way.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistil import losses
from jaxdistil.models import bert

B, L, V, H = 3, 7, 11, 5
RTOL = 1e-5          # float32 JAX vs float64 NumPy, on sums of positive terms
ATOL = 1e-6


# ----------------------------------------------------------------------------
# NumPy references, written from the definitions (float64 throughout).

def np_log_softmax(x):
  x = np.asarray(x, np.float64)
  m = x.max(axis=-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def np_soft_cross_entropy(s, t, weights, temperature):
  log_ps = np_log_softmax(np.asarray(s, np.float64) / temperature)
  log_pt = np_log_softmax(np.asarray(t, np.float64) / temperature)
  kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(axis=-1)
  sel = np.asarray(weights) > 0
  return temperature ** 2 * kl[sel].sum(), float(sel.sum())


def np_masked_lm(s, labels, mlm_mask):
  log_p = np_log_softmax(s)
  sel = np.asarray(mlm_mask) > 0
  total = 0.0
  for b, l in zip(*np.nonzero(sel)):
    total -= log_p[b, l, labels[b, l]]
  return total, float(sel.sum())


def np_cosine(s, t, weights):
  sel = np.asarray(weights) > 0
  s = np.asarray(s, np.float64)[sel]
  t = np.asarray(t, np.float64)[sel]
  cos = (s * t).sum(-1) / (np.linalg.norm(s, axis=-1) * np.linalg.norm(t, axis=-1))
  return (1.0 - cos).sum(), float(sel.sum())


def np_mse_logits(s, t, weights):
  d = np.asarray(s, np.float64) - np.asarray(t, np.float64)
  sel = np.asarray(weights) > 0
  return (d * d).sum(-1)[sel].sum(), float(sel.sum())


# ----------------------------------------------------------------------------
# Inputs.

def make_batch(seed=0):
  """attention_mask with trailing padding in two of the three rows, and an
  mlm_mask that selects a few real positions (and one padding position, which
  every weight must drop because it is not a real token)."""
  rng = np.random.default_rng(seed)
  lengths = [L, 4, 6]
  attention_mask = np.zeros((B, L), np.int32)
  for i, n in enumerate(lengths):
    attention_mask[i, :n] = 1
  mlm_mask = np.zeros((B, L), np.int32)
  mlm_mask[0, [1, 3, 5]] = 1
  mlm_mask[1, [2]] = 1
  mlm_mask[1, 6] = 1                       # a padding position: must not count
  mlm_mask[2, [1, 4]] = 1
  labels = rng.integers(0, V, size=(B, L)).astype(np.int32)
  return {'input_ids': labels.copy(), 'attention_mask': attention_mask,
          'labels': labels, 'mlm_mask': mlm_mask,
          'token_type_ids': np.zeros_like(labels)}


def make_arrays(seed=1, scale=3.0):
  """Student/teacher logits and hidden states; padding positions hold large
  (finite) junk so that a leak through the masks would show."""
  rng = np.random.default_rng(seed)
  s_logits = (scale * rng.standard_normal((B, L, V))).astype(np.float32)
  t_logits = (scale * rng.standard_normal((B, L, V))).astype(np.float32)
  s_hidden = rng.standard_normal((B, L, H)).astype(np.float32)
  t_hidden = rng.standard_normal((B, L, H)).astype(np.float32)
  pad = make_batch()['attention_mask'] == 0
  for x in (s_logits, t_logits, s_hidden, t_hidden):
    x[pad] = 1e3 * rng.standard_normal(x[pad].shape)
  return s_logits, t_logits, s_hidden, t_hidden


def assert_pair(got, want, rtol=RTOL, atol=ATOL):
  total, count = (float(x) for x in got)
  np.testing.assert_allclose(total, want[0], rtol=rtol, atol=atol)
  assert count == want[1]


# ----------------------------------------------------------------------------
# The four losses.

@pytest.mark.parametrize('temperature', [1.0, 2.0, 4.0])
def test_soft_cross_entropy_matches_numpy(temperature):
  batch = make_batch()
  s, t, _, _ = make_arrays()
  w = batch['attention_mask'] > 0
  want = np_soft_cross_entropy(s, t, w, temperature)
  assert want[1] == 7 + 4 + 6
  assert_pair(losses.soft_cross_entropy(s, t, w, temperature), want)


def test_soft_cross_entropy_temperature_scaling():
  """T=1 and T=4 give different values, each equal to its NumPy value; the
  T^2 factor is applied (KL of identical distributions is 0 at any T)."""
  batch = make_batch()
  s, t, _, _ = make_arrays()
  w = batch['attention_mask'] > 0
  got1 = float(losses.soft_cross_entropy(s, t, w, 1.0)[0])
  got4 = float(losses.soft_cross_entropy(s, t, w, 4.0)[0])
  np.testing.assert_allclose(got1, np_soft_cross_entropy(s, t, w, 1.0)[0], rtol=RTOL)
  np.testing.assert_allclose(got4, np_soft_cross_entropy(s, t, w, 4.0)[0], rtol=RTOL)
  assert abs(got1 - got4) > 1e-2 * got1
  # T^2 * KL at T=4, built by hand from the T=1 reference on logits / 4.
  np.testing.assert_allclose(
      got4, 16.0 * np_soft_cross_entropy(s / 4.0, t / 4.0, w, 1.0)[0], rtol=RTOL)
  same = float(losses.soft_cross_entropy(s, s, w, 4.0)[0])
  assert abs(same) < 1e-5


def test_masked_lm_matches_numpy():
  batch = make_batch()
  s, _, _, _ = make_arrays()
  w = losses.token_weights(batch, losses.LossConfig())['mlm']
  want = np_masked_lm(s, batch['labels'], w)
  assert want[1] == 6                     # the padding selection is dropped
  assert_pair(losses.masked_lm(s, batch['labels'], w), want)


def test_cosine_matches_numpy():
  batch = make_batch()
  _, _, sh, th = make_arrays()
  w = batch['attention_mask'] > 0
  assert_pair(losses.cosine(sh, th, w), np_cosine(sh, th, w))
  # Identical directions give 0, opposite ones 2 per token.
  n = float(w.sum())
  np.testing.assert_allclose(float(losses.cosine(sh, 3.0 * sh, w)[0]), 0.0,
                             atol=1e-5)
  np.testing.assert_allclose(float(losses.cosine(sh, -sh, w)[0]), 2.0 * n,
                             rtol=RTOL)


def test_cosine_zero_vector_is_finite():
  batch = make_batch()
  _, _, sh, th = make_arrays()
  sh = sh.copy()
  sh[0, 0] = 0.0
  w = batch['attention_mask'] > 0
  total, _ = losses.cosine(sh, th, w)
  assert np.isfinite(float(total))
  # The zero vector's cosine is 0 (the eps guards the division): term = 1.
  others = w.copy()
  others[0, 0] = False
  np.testing.assert_allclose(float(total), np_cosine(sh, th, others)[0] + 1.0,
                             rtol=RTOL)


def test_mse_logits_matches_numpy():
  batch = make_batch()
  s, t, _, _ = make_arrays()
  w = batch['attention_mask'] > 0
  assert_pair(losses.mse_logits(s, t, w), np_mse_logits(s, t, w))


def test_float_weights_and_bfloat16_inputs():
  """Integer/float weight arrays work like bools; bf16 inputs are upcast."""
  batch = make_batch()
  s, t, sh, th = make_arrays()
  w_int = batch['attention_mask']
  w_f = w_int.astype(np.float32)
  for w in (w_int, w_f):
    assert_pair(losses.mse_logits(s, t, w), np_mse_logits(s, t, w_int))
  s16 = jnp.asarray(s, jnp.bfloat16)
  t16 = jnp.asarray(t, jnp.bfloat16)
  want = np_soft_cross_entropy(np.asarray(s16, np.float32),
                               np.asarray(t16, np.float32), w_int, 2.0)
  got = losses.soft_cross_entropy(s16, t16, w_int, 2.0)
  assert got[0].dtype == jnp.float32
  assert_pair(got, want)


@pytest.mark.parametrize('temperature', [1.0, 4.0])
def test_extreme_logits_are_finite(temperature):
  """Logits of +-80 (exp overflows float32 if not shifted) stay finite and still
  match float64 NumPy."""
  batch = make_batch()
  rng = np.random.default_rng(5)
  s = (80.0 * rng.choice([-1.0, 1.0], size=(B, L, V))).astype(np.float32)
  t = (80.0 * rng.choice([-1.0, 1.0], size=(B, L, V))).astype(np.float32)
  w = batch['attention_mask'] > 0
  mlm_w = losses.token_weights(batch, losses.LossConfig())['mlm']
  ce = losses.soft_cross_entropy(s, t, w, temperature)
  mlm = losses.masked_lm(s, batch['labels'], mlm_w)
  mse = losses.mse_logits(s, t, w)
  for total, _ in (ce, mlm, mse):
    assert np.isfinite(float(total))
  assert_pair(ce, np_soft_cross_entropy(s, t, w, temperature), rtol=1e-4, atol=1e-3)
  assert_pair(mlm, np_masked_lm(s, batch['labels'], mlm_w), rtol=1e-5, atol=1e-3)
  assert_pair(mse, np_mse_logits(s, t, w))
  # Gradients through the extreme logits are finite too.
  g = jax.grad(lambda x: losses.soft_cross_entropy(x, t, w, temperature)[0] +
               losses.masked_lm(x, batch['labels'], mlm_w)[0])(jnp.asarray(s))
  assert np.all(np.isfinite(np.asarray(g)))


# ----------------------------------------------------------------------------
# Weights, counts, total, terms.

@pytest.mark.parametrize('restrict', [False, True])
def test_token_weights_and_counts(restrict):
  batch = make_batch()
  cfg = losses.LossConfig(restrict_ce_to_mask=restrict)
  real = batch['attention_mask'] > 0
  selected = (batch['mlm_mask'] > 0) & real
  want_ce = selected if restrict else real
  w = losses.token_weights(batch, cfg)
  assert set(w) == set(losses.TERMS)
  np.testing.assert_array_equal(np.asarray(w['ce']), want_ce)
  np.testing.assert_array_equal(np.asarray(w['mse']), want_ce)
  np.testing.assert_array_equal(np.asarray(w['mlm']), selected)
  np.testing.assert_array_equal(np.asarray(w['cos']), real)
  c = losses.counts(batch, cfg)
  assert {k: float(v) for k, v in c.items()} == {
      'ce': float(want_ce.sum()), 'mse': float(want_ce.sum()),
      'mlm': 6.0, 'cos': 17.0}
  assert float(c['ce']) == (6.0 if restrict else 17.0)


def test_total_is_weighted_sum_of_means():
  cfg = losses.LossConfig(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, alpha_mse=0.0)
  sums = {'ce': jnp.float32(12.0), 'mlm': jnp.float32(9.0),
          'cos': jnp.float32(3.4), 'mse': jnp.float32(1e6)}
  counts = {'ce': jnp.float32(17.0), 'mlm': jnp.float32(6.0),
            'cos': jnp.float32(17.0), 'mse': jnp.float32(17.0)}
  want = 5.0 * 12.0 / 17.0 + 2.0 * 9.0 / 6.0 + 1.0 * 3.4 / 17.0   # mse excluded
  np.testing.assert_allclose(float(losses.total(sums, counts, cfg)), want, rtol=RTOL)
  # A term absent from the sums (teacher-free) contributes nothing.
  only_mlm = losses.total({'mlm': sums['mlm']}, counts, cfg)
  np.testing.assert_allclose(float(only_mlm), 2.0 * 9.0 / 6.0, rtol=RTOL)
  # A zero count does not divide by zero (the sum is 0 then as well).
  zero = losses.total({'mlm': jnp.float32(0.0)}, {'mlm': jnp.float32(0.0)}, cfg)
  assert float(zero) == 0.0
  # With mse weighted, it enters like the others.
  cfg_mse = losses.LossConfig(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0,
                              alpha_mse=0.5)
  np.testing.assert_allclose(float(losses.total(sums, counts, cfg_mse)),
                             0.5 * 1e6 / 17.0, rtol=RTOL)


def _outputs():
  s, t, sh, th = make_arrays()
  rng = np.random.default_rng(9)
  # Earlier hidden states are junk: only the last one may be read.
  junk = lambda: rng.standard_normal((B, L, H)).astype(np.float32)
  student = bert.BertOutput(jnp.asarray(s), (junk(), jnp.asarray(sh)))
  teacher = bert.BertOutput(jnp.asarray(t), (junk(), junk(), jnp.asarray(th)))
  return student, teacher, (s, t, sh, th)


@pytest.mark.parametrize('restrict', [False, True])
def test_terms_match_numpy_and_total(restrict):
  batch = make_batch()
  cfg = losses.LossConfig(temperature=2.0, alpha_mse=0.5,
                          restrict_ce_to_mask=restrict)
  student, teacher, (s, t, sh, th) = _outputs()
  parts = losses.terms(student, teacher, batch, cfg)
  assert set(parts) == {'ce', 'mlm', 'cos', 'mse'}
  real = batch['attention_mask'] > 0
  selected = (batch['mlm_mask'] > 0) & real
  ce_w = selected if restrict else real
  want = {'ce': np_soft_cross_entropy(s, t, ce_w, 2.0),
          'mlm': np_masked_lm(s, batch['labels'], selected),
          'cos': np_cosine(sh, th, real),
          'mse': np_mse_logits(s, t, ce_w)}
  for k in want:
    assert_pair(parts[k], want[k])
  # The counts from the batch alone equal the counts the terms report.
  c = losses.counts(batch, cfg)
  for k in want:
    assert float(c[k]) == float(parts[k][1])
  got_total = float(losses.total({k: v[0] for k, v in parts.items()}, c, cfg))
  want_total = sum(cfg.weight(k) * want[k][0] / want[k][1] for k in want)
  np.testing.assert_allclose(got_total, want_total, rtol=RTOL)


def test_terms_without_teacher_is_mlm_only():
  batch = make_batch()
  cfg = losses.LossConfig()
  student, _, (s, _, _, _) = _outputs()
  parts = losses.terms(student, None, batch, cfg)
  assert set(parts) == {'mlm'}
  selected = (batch['mlm_mask'] > 0) & (batch['attention_mask'] > 0)
  assert_pair(parts['mlm'], np_masked_lm(s, batch['labels'], selected))


def test_zero_weight_terms_carry_no_gradient():
  """A term with weight 0 is reported but stop-gradiented."""
  batch = make_batch()
  cfg = losses.LossConfig(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0, alpha_mse=1.0)
  student, teacher, _ = _outputs()

  def term_sum(logits, name, config):
    out = bert.BertOutput(logits, student.hidden_states)
    return losses.terms(out, teacher, batch, config)[name][0]

  g_ce = jax.grad(term_sum)(student.logits, 'ce', cfg)
  g_mse = jax.grad(term_sum)(student.logits, 'mse', cfg)
  assert float(jnp.abs(g_ce).max()) == 0.0
  assert float(jnp.abs(g_mse).max()) > 0.0
  # Padding positions never receive gradient, even from weighted terms.
  pad = batch['attention_mask'] == 0
  assert float(jnp.abs(g_mse[pad]).max()) == 0.0


def test_loss_config_helpers():
  assert losses.LossConfig().needs_teacher
  assert not losses.LossConfig(alpha_ce=0.0, alpha_cos=0.0, alpha_mse=0.0).needs_teacher
  assert losses.LossConfig(alpha_ce=0.0, alpha_cos=0.0, alpha_mse=0.1).needs_teacher
  assert losses.LossConfig().weight('mlm') == 2.0


def test_hf_style_ignored_labels_and_nonfinite_padding_do_not_poison_sums():
  """-100 labels at unselected positions and inf at padding leave sums finite."""
  logits = np.zeros((1, 4, 5), np.float32)
  logits[0, 3] = np.inf                       # a padding position gone bad
  labels = np.array([[1, -100, 2, -100]])
  mlm_mask = np.array([[1, 0, 1, 0]])
  total, count = losses.masked_lm(jnp.asarray(logits), jnp.asarray(labels),
                                  jnp.asarray(mlm_mask))
  np.testing.assert_allclose(float(total), 2 * np.log(5.0), rtol=1e-6)
  assert float(count) == 2
  hidden = np.ones((1, 4, 3), np.float32)
  hidden[0, 3] = np.nan
  weights = np.array([[1, 1, 1, 0]])
  total, _ = losses.cosine(jnp.asarray(hidden), jnp.asarray(np.ones((1, 4, 3))),
                           jnp.asarray(weights))
  assert np.isfinite(float(total)) and abs(float(total)) < 1e-6


# ----------------------------------------------------------------------------
# The fused vocabulary terms: values and hand-written gradient against autodiff
# of the separate reference functions above (each tested against NumPy).

def _separate_sums(s, t, labels, w, temperature, grad_terms):
  ref = {'mlm': losses.masked_lm(s, labels, w['mlm'])[0],
         'ce': losses.soft_cross_entropy(s, t, w['ce'], temperature)[0],
         'mse': losses.mse_logits(s, t, w['mse'])[0]}
  return {k: v if k in grad_terms else jax.lax.stop_gradient(v)
          for k, v in ref.items()}


@pytest.mark.parametrize('temperature,restrict,grad_terms', [
    (2.0, False, ('ce', 'mlm', 'mse')), (1.0, True, ('ce', 'mlm')),
    (4.0, False, ('mlm',)), (2.0, False, ('ce',))])
def test_vocab_terms_values_and_gradient_match_separate_terms(
    temperature, restrict, grad_terms):
  batch = make_batch()
  cfg = losses.LossConfig(temperature=temperature, restrict_ce_to_mask=restrict)
  w = losses.token_weights(batch, cfg)
  s, t, _, _ = (jnp.asarray(x) for x in make_arrays())
  labels = jnp.asarray(batch['labels'])
  fused = losses.vocab_terms(s, t, labels, w, temperature, grad_terms)
  ref = _separate_sums(s, t, labels, w, temperature, grad_terms)
  for k in ('mlm', 'ce', 'mse'):
    np.testing.assert_allclose(float(fused[k][0]), float(ref[k]), rtol=RTOL)
    assert float(fused[k][1]) == float(jnp.sum(w[k]))
  # A loss that mixes the terms with different cotangents, as `total` does.
  mix = {'mlm': 0.7, 'ce': 1.9, 'mse': 0.3}
  g_fused = jax.grad(lambda x: sum(
      mix[k] * v[0] for k, v in losses.vocab_terms(
          x, t, labels, w, temperature, grad_terms).items()))(s)
  g_ref = jax.grad(lambda x: sum(
      mix[k] * v for k, v in _separate_sums(
          x, t, labels, w, temperature, grad_terms).items()))(s)
  scale = float(jnp.abs(g_ref).max())
  np.testing.assert_allclose(np.asarray(g_fused), np.asarray(g_ref),
                             rtol=1e-5, atol=1e-6 * scale)
  pad = batch['attention_mask'] == 0
  assert float(jnp.abs(g_fused[pad]).max()) == 0.0


def test_vocab_terms_without_teacher_bfloat16_and_nonfinite_padding():
  batch = make_batch()
  w = losses.token_weights(batch, losses.LossConfig())
  s = make_arrays()[0]
  s[batch['attention_mask'] == 0] = np.inf          # padding gone bad
  labels = jnp.asarray(batch['labels'])
  out = losses.vocab_terms(jnp.asarray(s), None, labels, w, 2.0)
  assert set(out) == {'mlm'}
  g = jax.grad(lambda x: losses.vocab_terms(x, None, labels, w, 2.0)['mlm'][0])(
      jnp.asarray(s))
  assert np.isfinite(float(out['mlm'][0])) and bool(jnp.isfinite(g).all())
  # bfloat16 logits: float32 maths, a bfloat16 gradient equal to autodiff's.
  sb = jnp.asarray(make_arrays()[0]).astype(jnp.bfloat16)
  fused = jax.grad(lambda x: losses.vocab_terms(x, None, labels, w, 2.0)['mlm'][0])(sb)
  ref = jax.grad(lambda x: losses.masked_lm(x, labels, w['mlm'])[0])(sb)
  assert fused.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(fused, np.float32),
                             np.asarray(ref, np.float32), rtol=1e-2, atol=1e-2)


def test_vocab_terms_keep_fewer_residuals_than_autodiff():
  """The fused backward keeps the two logits arrays and per-token norms; the
  autodiff of the separate terms keeps more [tokens, vocabulary] arrays."""
  batch = make_batch()
  w = losses.token_weights(batch, losses.LossConfig())
  s, t, _, _ = (jnp.asarray(x) for x in make_arrays())
  labels = jnp.asarray(batch['labels'])
  grad_terms = ('ce', 'mlm')

  def residual_bytes(fn):
    res = jax.eval_shape(lambda x: jax.tree.leaves(jax.vjp(fn, x)[1]), s)
    return sum(int(np.prod(r.shape)) * r.dtype.itemsize for r in res
               if r.shape[-1:] == (V,))

  fused = residual_bytes(lambda x: sum(
      v[0] for v in losses.vocab_terms(x, t, labels, w, 2.0, grad_terms).values()))
  separate = residual_bytes(lambda x: sum(
      _separate_sums(x, t, labels, w, 2.0, grad_terms).values()))
  assert fused == 2 * s.size * 4
  assert separate >= 3 * s.size * 4
