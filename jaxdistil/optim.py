"""The optimizer: the reference DistilBERT setting as an optax chain.

AdamW (betas 0.9/0.98, eps 1e-6, lr 5e-4, weight decay 0 by default and never on
biases or LayerNorm parameters), a linear warm-up over the first 5% of the steps
then a linear decay to 0, global-norm clipping at 5. Frozen parameters (the
student's position embeddings, by default) get no update and no optimizer state.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import optax


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  learning_rate: float = 5e-4
  b1: float = 0.9
  b2: float = 0.98
  eps: float = 1e-6
  weight_decay: float = 0.0
  warmup_fraction: float = 0.05
  clip_norm: float = 5.0   # <= 0 disables clipping


def schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
  warmup = max(1, math.ceil(cfg.warmup_fraction * total_steps))
  decay = max(1, total_steps - warmup)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, cfg.learning_rate, warmup),
       optax.linear_schedule(cfg.learning_rate, 0.0, decay)], [warmup])


def decay_mask(params):
  """Weight decay on matrices only: kernels and embeddings, never biases or
  LayerNorm scales."""
  def decays(path, _):
    return getattr(path[-1], 'key', None) in ('kernel', 'embedding')
  return jax.tree_util.tree_map_with_path(decays, params)


def make(cfg: OptimConfig, total_steps: int, frozen) -> optax.GradientTransformation:
  """The full transformation; `frozen` is a tree of bools like the params."""
  parts = []
  if cfg.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.clip_norm))
  parts.append(optax.adamw(schedule(cfg, total_steps), b1=cfg.b1, b2=cfg.b2,
                           eps=cfg.eps, weight_decay=cfg.weight_decay,
                           mask=decay_mask))
  train = optax.chain(*parts)
  labels = jax.tree.map(lambda f: 'frozen' if f else 'train', frozen)
  # Clipping inside the 'train' branch sees only trainable gradients, as the
  # reference (whose frozen tensors have no gradient at all) does.
  return optax.multi_transform({'train': train, 'frozen': optax.set_to_zero()},
                               labels)
