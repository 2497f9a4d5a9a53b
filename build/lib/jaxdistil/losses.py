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
"""

from __future__ import annotations

import dataclasses

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


def _masked_sum(per_token, weights) -> SumCount:
  # Select rather than multiply: a non-finite value at a padding position must
  # not turn the sum into NaN (0 * inf is NaN).
  weights = weights.astype(jnp.float32)
  return (jnp.sum(jnp.where(weights > 0, per_token * weights, 0.0)),
          jnp.sum(weights))


def soft_cross_entropy(student_logits, teacher_logits, weights,
                       temperature: float) -> SumCount:
  """Sum over weighted tokens of T^2 * KL(softmax(t/T) || softmax(s/T))."""
  log_ps = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature)
  log_pt = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature)
  kl = jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1)
  total, count = _masked_sum(kl, weights)
  return total * temperature ** 2, count


def masked_lm(student_logits, labels, mlm_mask) -> SumCount:
  """Sum over selected positions of -log p_student(true token)."""
  logits = student_logits.astype(jnp.float32)
  # Labels outside the vocabulary (HF's -100 at unselected positions) would
  # gather NaN; they are never selected, so any in-range index will do.
  labels = jnp.clip(labels, 0, logits.shape[-1] - 1)
  true = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
  nll = jax.nn.logsumexp(logits, axis=-1) - true
  return _masked_sum(nll, mlm_mask)


def cosine(student_hidden, teacher_hidden, weights, eps: float = 1e-8) -> SumCount:
  """Sum over weighted tokens of 1 - cos(student_hidden, teacher_hidden)."""
  s = student_hidden.astype(jnp.float32)
  t = teacher_hidden.astype(jnp.float32)
  dot = jnp.sum(s * t, axis=-1)
  norms = jnp.sqrt(jnp.sum(s * s, axis=-1) * jnp.sum(t * t, axis=-1))
  return _masked_sum(1.0 - dot / jnp.maximum(norms, eps), weights)


def mse_logits(student_logits, teacher_logits, weights) -> SumCount:
  """Sum over weighted tokens of sum_vocab (s - t)^2."""
  diff = student_logits.astype(jnp.float32) - teacher_logits.astype(jnp.float32)
  return _masked_sum(jnp.sum(diff * diff, axis=-1), weights)


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
  out = {'mlm': masked_lm(student_out.logits, batch['labels'], w['mlm'])}
  if teacher_out is not None:
    out['ce'] = soft_cross_entropy(student_out.logits, teacher_out.logits, w['ce'],
                                   cfg.temperature)
    out['cos'] = cosine(student_out.hidden_states[-1],
                        teacher_out.hidden_states[-1], w['cos'])
    out['mse'] = mse_logits(student_out.logits, teacher_out.logits, w['mse'])
  return {k: (v if cfg.weight(k) else jax.lax.stop_gradient(v))
          for k, v in out.items()}


def total(sums: dict, total_counts: dict, cfg: LossConfig) -> jax.Array:
  """sum_k a_k * S_k / N_k, with N_k the token count of the whole batch."""
  loss = jnp.zeros((), jnp.float32)
  for k, s in sums.items():
    if cfg.weight(k):
      loss = loss + cfg.weight(k) * s / jnp.maximum(total_counts[k], 1.0)
  return loss
