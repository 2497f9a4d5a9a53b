"""The DistilBERT losses as pure functions that return (sum, count) pairs.

Returning sums and counts rather than means keeps averages exact under any sharding
and any gradient accumulation: the step divides the total sum by the total count
(the counts do not depend on the parameters, so they can be taken from the whole
batch before the micro-batches run).

    L = a_ce * L_ce + a_mlm * L_mlm + a_cos * L_cos + a_mse * L_mse

- L_ce:  KL(teacher || student) of the temperature-T softmaxes, times T^2, averaged
         over non-padding tokens (or over masked tokens only, `restrict_ce_to_mask`).
- L_mlm: cross-entropy of the student against the true tokens at the positions
         selected for prediction (the 80% [MASK], 10% random and 10% kept ones).
- L_cos: 1 - cosine similarity of the student's and the teacher's last hidden
         states, averaged over non-padding tokens.
- L_mse: squared error of the logits, summed over the vocabulary, averaged over
         the same tokens as L_ce (the reference's option, weight 0 by default).

All maths is in float32 whatever the compute dtype.

The three terms over the vocabulary (L_ce, L_mlm, L_mse) are computed together
by `vocab_terms`, whose gradient is written out by hand (a `jax.custom_vjp`):
the backward pass is one elementwise pass over the [tokens, vocabulary] logits,
and it keeps only the student's logits, the teacher's softmax at T (its logits
instead for L_mse) and two per-token log-normalisers,
where autodiff of the separate terms keeps several [tokens, vocabulary]
intermediates (softmaxes at T and at 1) and makes a pass for each. The separate
functions stay as the reference (tested against NumPy) and for evaluation.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

SumCount = tuple[jax.Array, jax.Array]
TERMS = ('ce', 'mlm', 'cos', 'mse')


@dataclasses.dataclass(frozen=True)
class LossConfig:
  temperature: float = 2.0
  alpha_ce: float = 5.0
  alpha_mlm: float = 2.0
  alpha_cos: float = 1.0
  alpha_mse: float = 0.0
  restrict_ce_to_mask: bool = False

  def weight(self, term: str) -> float:
    return getattr(self, 'alpha_' + term)

  @property
  def needs_teacher(self) -> bool:
    return any(self.weight(t) for t in ('ce', 'cos', 'mse'))


def masked_sum(values, weights) -> SumCount:
  """(sum of values * weights over entries of weight > 0, sum of weights).

  A select rather than a product: a non-finite value at a padding position
  (weight 0) must not turn the sum into NaN (0 * inf is NaN)."""
  weights = weights.astype(jnp.float32)
  return (jnp.sum(jnp.where(weights > 0, values * weights, 0.0)),
          jnp.sum(weights))


def kl_at_temperature(student_logits, teacher_logits,
                      temperature: float) -> jax.Array:
  """KL(softmax(t/T) || softmax(s/T)) over the last axis: one value per row
  (per token). The teacher gets no gradient, and a class of teacher
  probability 0 adds nothing (not 0 * -inf)."""
  t = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
  log_ps = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature)
  log_pt = jax.nn.log_softmax(t / temperature)
  pt = jnp.exp(log_pt)
  return jnp.sum(jnp.where(pt > 0, pt * (log_pt - log_ps), 0.0), axis=-1)


def cross_entropy(logits, labels) -> jax.Array:
  """-log softmax(logits)[label] over the last axis, in float32: one value
  per row (per token). Labels outside the classes (HF's -100 at unselected
  positions) would gather NaN; they are clipped in range, so mask such rows."""
  logits = logits.astype(jnp.float32)
  labels = jnp.clip(labels.astype(jnp.int32), 0, logits.shape[-1] - 1)
  true = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
  return jax.nn.logsumexp(logits, axis=-1) - true


def soft_cross_entropy(student_logits, teacher_logits, weights,
                       temperature: float) -> SumCount:
  """Sum over weighted tokens of T^2 * KL(softmax(t/T) || softmax(s/T))."""
  kl = kl_at_temperature(student_logits, teacher_logits, temperature)
  total, count = masked_sum(kl, weights)
  return total * temperature ** 2, count


def masked_lm(student_logits, labels, mlm_mask) -> SumCount:
  """Sum over selected positions of -log p_student(true token)."""
  return masked_sum(cross_entropy(student_logits, labels), mlm_mask)


def cosine(student_hidden, teacher_hidden, weights, eps: float = 1e-8) -> SumCount:
  """Sum over weighted tokens of 1 - cos(student_hidden, teacher_hidden)."""
  s = student_hidden.astype(jnp.float32)
  t = teacher_hidden.astype(jnp.float32)
  dot = jnp.sum(s * t, axis=-1)
  norms = jnp.sqrt(jnp.sum(s * s, axis=-1) * jnp.sum(t * t, axis=-1))
  return masked_sum(1.0 - dot / jnp.maximum(norms, eps), weights)


def mse_logits(student_logits, teacher_logits, weights) -> SumCount:
  """Sum over weighted tokens of sum_vocab (s - t)^2."""
  diff = student_logits.astype(jnp.float32) - teacher_logits.astype(jnp.float32)
  return masked_sum(jnp.sum(diff * diff, axis=-1), weights)


def _where_weighted(weights, values):
  """values[..., v] at tokens with weight > 0, else 0 (never 0 * inf)."""
  return jnp.where((weights > 0)[..., None], values, 0.0)


def _vocab_forward(s, t, labels, w, temperature):
  """Sums of the vocabulary terms; the per-token log-normaliser of the
  student's logits at 1 and at T; and the teacher's softmax at T."""
  s = s.astype(jnp.float32)
  labels = jnp.clip(labels, 0, s.shape[-1] - 1)
  lse = jax.nn.logsumexp(s, axis=-1)
  true = jnp.take_along_axis(s, labels[..., None], axis=-1)[..., 0]
  sums = {'mlm': masked_sum(lse - true, w['mlm'])[0]}
  kept = {'lse': lse}
  if t is not None:
    t = t.astype(jnp.float32)
    s_t, t_t = s / temperature, t / temperature
    lse_s = jax.nn.logsumexp(s_t, axis=-1)
    log_ps = s_t - lse_s[..., None]
    log_pt = jax.nn.log_softmax(t_t, axis=-1)
    pt = jnp.exp(log_pt)
    kl = jnp.sum(pt * (log_pt - log_ps), axis=-1)
    sums['ce'] = masked_sum(kl, w['ce'])[0] * temperature ** 2
    diff = s - t
    sums['mse'] = masked_sum(jnp.sum(diff * diff, axis=-1), w['mse'])[0]
    kept.update(lse_s=lse_s, pt=pt)
  return sums, kept


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _vocab_sums(s, t, labels, w, temperature, grad_terms):
  return _vocab_forward(s, t, labels, w, temperature)[0]


def _vocab_sums_fwd(s, t, labels, w, temperature, grad_terms):
  sums, kept = _vocab_forward(s, t, labels, w, temperature)
  # Keep what the backward reads: the teacher's softmax for L_ce (computed
  # here anyway, so the backward makes one exp pass fewer), its logits only
  # for L_mse.
  res = {'lse': kept['lse']}
  if t is not None and 'ce' in grad_terms:
    res.update(lse_s=kept['lse_s'], pt=kept['pt'])
  if t is not None and 'mse' in grad_terms:
    res['t'] = t
  return sums, (s, labels, w, res)


def _vocab_sums_bwd(temperature, grad_terms, residuals, g):
  """d sums / d s: (softmax(s) - onehot) for L_mlm, T (softmax(s/T) -
  softmax(t/T)) for L_ce, 2 (s - t) for L_mse; each at its own tokens."""
  s, labels, w, res = residuals
  x = s.astype(jnp.float32)
  ds = jnp.zeros_like(x)
  coef = lambda k, scale=1.0: (g[k] * scale * w[k].astype(jnp.float32))[..., None]
  if 'mlm' in grad_terms:
    onehot = jnp.arange(x.shape[-1]) == jnp.clip(labels, 0, x.shape[-1] - 1)[..., None]
    p = jnp.exp(x - res['lse'][..., None])
    ds += _where_weighted(w['mlm'], coef('mlm') * (p - onehot))
  if 'pt' in res:
    ps = jnp.exp(x / temperature - res['lse_s'][..., None])
    ds += _where_weighted(w['ce'], coef('ce', temperature) * (ps - res['pt']))
  if 't' in res:
    ds += _where_weighted(w['mse'], coef('mse', 2.0) * (x - res['t'].astype(jnp.float32)))
  zeros = lambda tree: jax.tree.map(lambda _: None, tree)
  return ds.astype(s.dtype), None, None, zeros(w)


_vocab_sums.defvjp(_vocab_sums_fwd, _vocab_sums_bwd)


def vocab_terms(student_logits, teacher_logits, labels, weights: dict,
                temperature: float, grad_terms=('ce', 'mlm', 'mse')) -> dict:
  """(sum, count) of L_mlm and, with a teacher, L_ce and L_mse, equal to
  `masked_lm`, `soft_cross_entropy` and `mse_logits`, with a hand-written
  gradient with respect to the student's logits for the terms in `grad_terms`
  (the others carry none). The teacher's logits, the labels and the weights
  get no gradient. `weights` maps 'mlm' (and 'ce', 'mse') to [..., tokens]."""
  names = ('mlm',) if teacher_logits is None else ('mlm', 'ce', 'mse')
  w = {k: weights[k] for k in names}
  if teacher_logits is not None:
    teacher_logits = jax.lax.stop_gradient(teacher_logits)
  sums = _vocab_sums(student_logits, teacher_logits, labels, w, float(temperature),
                     tuple(sorted(k for k in grad_terms if k in names)))
  return {k: (sums[k], jnp.sum(w[k].astype(jnp.float32))) for k in names}


def token_weights(batch: dict, cfg: LossConfig) -> dict:
  """Which tokens each term averages over (depends on the batch only)."""
  real = batch['attention_mask'] > 0
  selected = batch['mlm_mask'] > 0
  ce = (selected & real) if cfg.restrict_ce_to_mask else real
  return {'ce': ce, 'mlm': selected & real, 'cos': real, 'mse': ce}


def counts(batch: dict, cfg: LossConfig) -> dict:
  """Token count of every term over a (global) batch; no parameters involved."""
  return {k: jnp.sum(w.astype(jnp.float32))
          for k, w in token_weights(batch, cfg).items()}


def terms(student_out, teacher_out, batch: dict, cfg: LossConfig) -> dict:
  """(sum, count) of every term that can be computed.

  Terms with weight 0 are still reported as metrics but carry no gradient. The
  teacher terms are absent when `teacher_out` is None (teacher-free MLM training).
  """
  w = token_weights(batch, cfg)
  out = vocab_terms(student_out.logits,
                    None if teacher_out is None else teacher_out.logits,
                    batch['labels'], w, cfg.temperature,
                    grad_terms=tuple(k for k in TERMS if cfg.weight(k)))
  if teacher_out is not None:
    out['cos'] = cosine(student_out.hidden_states[-1],
                        teacher_out.hidden_states[-1], w['cos'])
  return {k: (v if cfg.weight(k) else jax.lax.stop_gradient(v))
          for k, v in out.items()}


def total(sums: dict, total_counts: dict, cfg: LossConfig) -> jax.Array:
  """sum_k a_k * S_k / N_k, with N_k the token count of the whole batch."""
  loss = jnp.zeros((), jnp.float32)
  for k, s in sums.items():
    if cfg.weight(k):
      loss = loss + cfg.weight(k) * s / jnp.maximum(total_counts[k], 1.0)
  return loss
