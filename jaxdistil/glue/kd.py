"""Task-specific distillation losses: a fine-tuned teacher teaches a student
on one GLUE task, as pure functions over a batch.

    classification: alpha * T^2 * KL(softmax(t/T) || softmax(s/T))
                    + (1 - alpha) * CE(s, label)
    regression:     beta * MSE(s, t) + (1 - beta) * MSE(s, label)

(TextBrewer and TinyBERT's stage 2 use the soft term alone, alpha = 1). Rows
carry `weights` (0 for the zero-weight rows that pad a short batch) and
`label_weights` (0 for rows of an unlabelled transfer set). The loss is a
mean over rows of each row's own loss: the mix above on a labelled row, the
teacher's term alone (alpha = 1, TinyBERT's) on a transfer row. So every
example weighs the same whatever the batch holds: a labelled row is not
worth 1 / (1 - alpha) transfer rows, and the share of the labels does not
swing from batch to batch. With every row labelled it is exactly
alpha * mean(kd) + (1 - alpha) * mean(ce).

TinyBERT's stage 1 (intermediate layers): `hidden_mse` matches the student's
hidden states (embeddings included) to the teacher's under a layer map
(`uniform_layer_map`), through a linear projection when the widths differ
(`init_projection`, TinyBERT's one shared `fit_dense`); `attention_mse`
matches the attention scores. `bert.apply` returns no scores, so
`attention_scores` recomputes them from a layer's input (the hidden states
`bert.apply` returns) and its query and key parameters: the same numbers the
layer used, whatever attention kernel ran it, at the cost of one more
query-key product per matched layer.

All maths in float32; the teacher's outputs get no gradient.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jaxdistil import losses
from jaxdistil.glue.tasks import GlueError

TEMPERATURE = 2.0
ALPHA = 0.5
BETA = 0.5


def check_settings(temperature: float, alpha: float, beta: float) -> None:
  """One-line `GlueError` naming the flag when a setting is out of range."""
  if not temperature > 0:     # also refuses NaN
    raise GlueError(f'--kd_temperature={temperature}: the temperature must be '
                    f'> 0 (2 in the paper\'s distillation step)')
  for flag, value in (('--kd_alpha', alpha), ('--kd_beta', beta)):
    if not 0.0 <= value <= 1.0:
      raise GlueError(f'{flag}={value}: must be in [0, 1] (the weight of the '
                      f'teacher\'s term; 1 - it weighs the gold labels)')


def weighted_mean(per_row, weights) -> jax.Array:
  """sum(w * x) / sum(w) over rows with w > 0, exactly; 0 when no row has
  weight (never 0 / 0). A select, not a product, so a non-finite value in a
  zero-weight row cannot turn the sum into NaN."""
  total, count = losses.masked_sum(per_row, weights)
  return jnp.where(count > 0, total / jnp.where(count > 0, count, 1.0), 0.0)


def _label_rows(weights, label_weights):
  if label_weights is None:
    return weights
  return weights.astype(jnp.float32) * label_weights.astype(jnp.float32)


def _per_row_mix(soft, hard, label_weights, alpha: float):
  """Each row's loss: alpha * soft + (1 - alpha) * hard where it has a gold
  label, the soft term alone (alpha = 1, TinyBERT's) where it has none. A
  select, so a transfer row's made-up label never reaches the sum."""
  mixed = alpha * soft + (1.0 - alpha) * hard
  if label_weights is None:
    return mixed
  return jnp.where(label_weights > 0, mixed, soft)


def classification_loss(student_logits, teacher_logits, labels, weights,
                        label_weights=None, *, temperature: float = TEMPERATURE,
                        alpha: float = ALPHA):
  """(loss, {'kd', 'ce'}): the mean over rows of `weights` of each row's
  alpha * kd + (1 - alpha) * ce, or kd alone on a row without a gold label
  (`label_weights` 0: a transfer set's), so that every example counts once.

  kd: T^2 * KL of the softmaxes at T; ce: the student's cross-entropy at
  T = 1 against integer `labels`. With every row labelled this is
  alpha * mean(kd) + (1 - alpha) * mean(ce). The reported 'kd' is the mean
  over rows of `weights`, 'ce' over the labelled ones. Logits are
  [batch, classes]."""
  kd_row = temperature ** 2 * losses.kl_at_temperature(
      student_logits, teacher_logits, temperature)
  nll = losses.cross_entropy(student_logits, labels)
  total = weighted_mean(_per_row_mix(kd_row, nll, label_weights, alpha), weights)
  return total, {'kd': weighted_mean(kd_row, weights),
                 'ce': weighted_mean(nll, _label_rows(weights, label_weights))}


def regression_loss(student_logits, teacher_logits, labels, weights,
                    label_weights=None, *, beta: float = BETA):
  """(loss, {'kd', 'mse_label'}): the mean over rows of `weights` of each
  row's beta * (s - t)^2 + (1 - beta) * (s - label)^2, or (s - t)^2 alone on
  a row without a gold label. Logits are [batch, 1] (or [batch])."""
  s = student_logits.astype(jnp.float32).reshape(student_logits.shape[0])
  t = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
  t = t.reshape(teacher_logits.shape[0])
  kd_row = jnp.square(s - t)
  label_row = jnp.square(s - labels.astype(jnp.float32))
  total = weighted_mean(_per_row_mix(kd_row, label_row, label_weights, beta),
                        weights)
  return total, {'kd': weighted_mean(kd_row, weights),
                 'mse_label': weighted_mean(label_row,
                                            _label_rows(weights, label_weights))}


def task_loss(student_logits, teacher_logits, labels, weights, label_weights,
              regression: bool, *, temperature: float = TEMPERATURE,
              alpha: float = ALPHA, beta: float = BETA):
  """`regression_loss` or `classification_loss`, as the task is."""
  if regression:
    return regression_loss(student_logits, teacher_logits, labels, weights,
                           label_weights, beta=beta)
  return classification_loss(student_logits, teacher_logits, labels, weights,
                             label_weights, temperature=temperature,
                             alpha=alpha)


# ----------------------------------------------------------------------------
# Intermediate layers (TinyBERT's stage 1)

def uniform_layer_map(n_student: int, n_teacher: int) -> tuple[int, ...]:
  """For hidden states 0..n_student (0 the embeddings), the teacher's hidden
  state each one learns from: i -> floor(i * n_teacher / n_student), so
  0 <- 0 and the last layer <- the last (6 of 12: 0, 2, 4, ..., 12)."""
  if n_student < 1 or n_teacher < 1:
    raise GlueError(f'a layer map needs layers on both sides (student '
                    f'{n_student}, teacher {n_teacher})')
  return tuple(i * n_teacher // n_student for i in range(n_student + 1))


def init_projection(student_hidden: int, teacher_hidden: int, rng,
                    std: float = 0.02) -> dict:
  """A linear map student width -> teacher width ({'kernel', 'bias'}), shared
  by every matched layer as TinyBERT's `fit_dense`; BERT's N(0, std) init.
  It is trained with the student."""
  return {'kernel': std * jax.random.normal(rng, (student_hidden, teacher_hidden),
                                            jnp.float32),
          'bias': jnp.zeros((teacher_hidden,), jnp.float32)}


def _check_map(layer_map: Sequence[int], n_student: int, n_teacher: int,
               what: str) -> None:
  if len(layer_map) != n_student or not all(0 <= j < n_teacher
                                            for j in layer_map):
    raise GlueError(f'layer map {tuple(layer_map)} does not fit: it needs one '
                    f'teacher index in 0..{n_teacher - 1} for each of the '
                    f'student\'s {n_student} {what}')


def _token_weights(attention_mask, weights):
  w = (attention_mask > 0).astype(jnp.float32)
  if weights is not None:
    w = w * weights.astype(jnp.float32)[:, None]
  return w


def hidden_mse(student_hidden_states, teacher_hidden_states, attention_mask,
               layer_map: Sequence[int], projection: dict | None = None,
               weights=None):
  """(sum over student hidden states i of the MSE between it (projected when
  `projection` is given) and teacher hidden state layer_map[i], [per i]).

  Each MSE is the mean over hidden units, then the mean over real tokens
  (`attention_mask` > 0, in rows of weight > 0 when `weights` is given)."""
  _check_map(layer_map, len(student_hidden_states), len(teacher_hidden_states),
             'hidden states (embeddings included)')
  w = _token_weights(attention_mask, weights)
  per_layer = []
  for s, j in zip(student_hidden_states, layer_map):
    s = s.astype(jnp.float32)
    if projection is not None:
      s = s @ projection['kernel'] + projection['bias']
    t = jax.lax.stop_gradient(teacher_hidden_states[j].astype(jnp.float32))
    if s.shape != t.shape:
      raise GlueError(f'student hidden states {s.shape} and the teacher\'s '
                      f'{t.shape} differ: give a projection (init_projection)')
    per_token = jnp.mean(jnp.square(s - t), axis=-1)
    per_layer.append(weighted_mean(per_token.reshape(-1), w.reshape(-1)))
  per_layer = jnp.stack(per_layer)
  return jnp.sum(per_layer), per_layer


def attention_scores(cfg, params: dict, hidden_in, layer: int) -> jax.Array:
  """Layer `layer`'s attention scores q.k / sqrt(head_dim), [batch, heads,
  query, key], float32, before the padding mask: recomputed from the layer's
  input `hidden_in` (hidden state `layer` of `bert.apply`) and its query and
  key parameters (`params` a `bert.init` tree: params['encoder']['layer_i'])."""
  p = params['encoder'][f'layer_{layer}']['attention']['self']
  x = hidden_in.astype(jnp.float32)
  proj = lambda d: (jnp.einsum('ble,ehd->blhd', x, d['kernel'].astype(jnp.float32))
                    + d['bias'].astype(jnp.float32))
  q = proj(p['query']) * cfg.head_dim ** -0.5
  return jnp.einsum('bqhd,bkhd->bhqk', q, proj(p['key']))


def attention_mse(student_scores: Sequence, teacher_scores: Sequence,
                  attention_mask, weights=None):
  """(sum over matched layers of the MSE of the attention scores, [per
  layer]): mean over heads and over (query, key) pairs of real tokens, as
  TinyBERT (which zeroes the masked scores instead). `student_scores[i]` is
  matched with `teacher_scores[i]` (pick the teacher's layers by a layer map:
  student layer i (1-based) <- teacher layer map[i])."""
  if len(student_scores) != len(teacher_scores):
    raise GlueError(f'{len(student_scores)} student attention layers against '
                    f'{len(teacher_scores)} of the teacher: match them one to one')
  w = _token_weights(attention_mask, weights)
  pair = (w[:, :, None] * w[:, None, :])[:, None]          # [B, 1, Lq, Lk]
  per_layer = []
  for s, t in zip(student_scores, teacher_scores):
    if s.shape != t.shape:
      raise GlueError(f'student attention scores {s.shape} and the teacher\'s '
                      f'{t.shape} differ: attention matching needs the same '
                      f'number of heads')
    t = jax.lax.stop_gradient(t.astype(jnp.float32))
    sq = jnp.square(s.astype(jnp.float32) - t)
    per_layer.append(weighted_mean(sq.reshape(-1),
                                   jnp.broadcast_to(pair, sq.shape).reshape(-1)))
  per_layer = jnp.stack(per_layer)
  return jnp.sum(per_layer), per_layer
