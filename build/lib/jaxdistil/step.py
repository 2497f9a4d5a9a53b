"""The fused distillation step: one XLA program per optimizer step.

    teacher forward (frozen, stop_gradient) -> student forward -> losses
    -> gradients (student only) -> [accumulate over micro-batches] -> optax update

Gradient accumulation scans over micro-batches with `lax.scan`. Each micro-batch's
loss divides its (sum) by the token counts of the *whole* batch, which depend only
on the batch, so the summed gradients equal the gradient of one step on the whole
batch (up to float summation order), whatever the number of micro-batches.

Micro-batches are strided (micro-batch m holds rows m, m + M, m + 2M, ...), so each
device's slice of the batch contributes to every micro-batch and the split needs
no communication.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxdistil import losses
from jaxdistil.models import bert


class TrainState(struct.PyTreeNode):
  step: jax.Array       # int32 scalar: optimizer steps taken
  params: Any           # the student's parameters (float32 master copy)
  opt_state: Any
  rng: jax.Array        # uint32 key data (a plain array, so checkpoints hold it)


def create_state(params, tx: optax.GradientTransformation, seed: int) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params),
                    rng=jax.random.key_data(jax.random.key(seed)))


@dataclasses.dataclass(frozen=True)
class StepConfig:
  student: bert.BertConfig
  teacher: bert.BertConfig | None
  loss: losses.LossConfig
  micro_batches: int = 1
  # True: a step whose loss or gradients are not finite leaves the params and
  # the optimizer state as they were (the step counter still advances, as the
  # data did) and reports skipped=1; False: it is applied, and the loop stops.
  skip_nonfinite: bool = False


def split_micro_batches(batch: dict, m: int, sharding=None) -> dict:
  """[B, ...] -> [m, B/m, ...], micro-batch i = rows i, i+m, i+2m, ..."""
  def split(x):
    y = x.reshape((x.shape[0] // m, m) + x.shape[1:]).swapaxes(0, 1)
    return y if sharding is None else jax.lax.with_sharding_constraint(y, sharding)
  return jax.tree.map(split, batch)


def _tree_add(a, b):
  return jax.tree.map(jnp.add, a, b)


def packing_args(batch: dict) -> dict:
  """`bert.apply`'s keyword arguments for packed rows (none for unpacked)."""
  return {k: batch[k] for k in ('segment_ids', 'position_ids') if k in batch}


def make_train_step(cfg: StepConfig, tx: optax.GradientTransformation,
                    lr_schedule: optax.Schedule, frozen,
                    micro_sharding=None) -> Callable:
  """Build `train_step(state, teacher_params, batch) -> (state, metrics)`.

  `batch` holds [B, L] int32 arrays: `input_ids` (already masked), `attention_mask`,
  `labels` (the true tokens), `mlm_mask` (positions to predict) and optionally
  `token_type_ids` (teacher only) and, for packed rows, `segment_ids` and
  `position_ids` (teacher and student). `frozen` is a tree of bools over the student's
  params. `micro_sharding` pins the [M, B/M, L] split to the batch axes.
  """
  use_teacher = cfg.teacher is not None and cfg.loss.needs_teacher
  dropout = cfg.student.hidden_dropout > 0 or cfg.student.attention_dropout > 0

  def freeze(params):
    return jax.tree.map(lambda p, f: jax.lax.stop_gradient(p) if f else p,
                        params, frozen)

  def micro_grads(params, teacher_params, micro, rng, total_counts):
    teacher_out = None
    if use_teacher:
      out = bert.apply(cfg.teacher, teacher_params, micro['input_ids'],
                       micro['attention_mask'], micro.get('token_type_ids'),
                       **packing_args(micro))
      # Only what the losses read; the rest of the teacher is dead code to XLA.
      teacher_out = jax.lax.stop_gradient(
          bert.BertOutput(out.logits, (out.hidden_states[-1],)))
      # Run the teacher before the student rather than beside it: on a CPU two
      # concurrent matmuls split the same cores and both slow down.
      teacher_out, micro = jax.lax.optimization_barrier((teacher_out, micro))

    def loss_fn(p):
      student_out = bert.apply(cfg.student, freeze(p), micro['input_ids'],
                               micro['attention_mask'],
                               dropout_rng=rng if dropout else None,
                               **packing_args(micro))
      parts = losses.terms(student_out, teacher_out, micro, cfg.loss)
      sums = {k: s for k, (s, _) in parts.items()}
      return losses.total(sums, total_counts, cfg.loss), sums

    (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return grads, sums

  def train_step(state: TrainState, teacher_params, batch: dict):
    total_counts = losses.counts(batch, cfg.loss)
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    m = cfg.micro_batches
    if m == 1:
      grads, sums = micro_grads(state.params, teacher_params, batch, rng,
                                total_counts)
    else:
      micro = split_micro_batches(batch, m, micro_sharding)
      first = jax.tree.map(lambda x: x[0], micro)
      zeros = jax.tree.map(
          lambda s: jnp.zeros(s.shape, s.dtype),
          jax.eval_shape(micro_grads, state.params, teacher_params, first, rng,
                         total_counts))

      def body(carry, inputs):
        mb, i = inputs
        out = micro_grads(state.params, teacher_params, mb,
                          jax.random.fold_in(rng, i), total_counts)
        return _tree_add(carry, out), None

      (grads, sums), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(m)))

    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {f'loss_{k}': s / jnp.maximum(total_counts[k], 1.0)
               for k, s in sums.items()}
    metrics.update(
        loss=losses.total(sums, total_counts, cfg.loss),
        grad_norm=optax.global_norm(grads),
        learning_rate=lr_schedule(state.step),
        tokens=total_counts['cos'],
        masked_tokens=total_counts['mlm'])
    if cfg.skip_nonfinite:
      finite = jnp.isfinite(metrics['loss']) & jnp.isfinite(metrics['grad_norm'])
      keep = lambda new, old: jax.tree.map(
          lambda a, b: jnp.where(finite, a, b), new, old)
      params = keep(params, state.params)
      opt_state = keep(opt_state, state.opt_state)
      metrics['skipped'] = 1.0 - finite.astype(jnp.float32)
    new_state = state.replace(step=state.step + 1, params=params,
                              opt_state=opt_state)
    return new_state, metrics

  return train_step


def make_eval_step(cfg: StepConfig) -> Callable:
  """`eval_step(params, teacher_params, batch) -> sums` for held-out batches.

  Returns sums and counts (so any number of batches combine exactly): the
  student's MLM loss and accuracy at the masked positions, KL(teacher ||
  student) at the distillation temperature (times T^2, as L_ce) over real
  tokens, and the teacher's own MLM accuracy for reference. No dropout.
  """
  def eval_step(params, teacher_params, batch):
    student = bert.apply(cfg.student, params, batch['input_ids'],
                         batch['attention_mask'], **packing_args(batch))
    w = losses.token_weights(batch, cfg.loss)
    mlm_sum, mlm_count = losses.masked_lm(student.logits, batch['labels'], w['mlm'])
    hit = lambda logits: jnp.sum(
        jnp.where(w['mlm'], jnp.argmax(logits, -1) == batch['labels'], False))
    out = {'mlm_loss_sum': mlm_sum, 'mlm_count': mlm_count,
           'student_correct': hit(student.logits)}
    if teacher_params is not None and cfg.teacher is not None:
      teacher = bert.apply(cfg.teacher, teacher_params, batch['input_ids'],
                           batch['attention_mask'], batch.get('token_type_ids'),
                           **packing_args(batch))
      kl_sum, kl_count = losses.soft_cross_entropy(
          student.logits, teacher.logits, batch['attention_mask'] > 0,
          cfg.loss.temperature)
      out.update(kl_sum=kl_sum, kl_count=kl_count,
                 teacher_correct=hit(teacher.logits))
    return out

  return eval_step


def summarize_eval(sums: dict) -> dict:
  """Means from summed eval outputs."""
  n = max(float(sums['mlm_count']), 1.0)
  out = {'eval/mlm_loss': float(sums['mlm_loss_sum']) / n,
         'eval/mlm_accuracy': float(sums['student_correct']) / n}
  if 'kl_sum' in sums:
    out['eval/kl_to_teacher'] = float(sums['kl_sum']) / max(float(sums['kl_count']),
                                                            1.0)
    out['eval/teacher_mlm_accuracy'] = float(sums['teacher_correct']) / n
  return out
