"""The optimizer: the reference DistilBERT setting as an optax chain.

AdamW (betas 0.9/0.98, eps 1e-6, lr 5e-4, weight decay 0 by default and never on
biases or LayerNorm parameters), a linear warm-up over the first 5% of the steps
then a linear decay to 0, global-norm clipping at 5. Frozen parameters (the
student's position embeddings, by default) get no update and no optimizer state.

`lr_mults` gives groups of parameters their own learning rate, as big_vision's
`config.lr_mults` and PyTorch's parameter groups do: ((regex, multiplier), ...)
matched in order against each parameter's path ('cls/predictions/bias'); the
first full match scales that parameter's update (weight decay included, as a
group learning rate would). A new MLM head on a pretrained encoder, say, learns
at 20x the encoder's rate with (('cls/.*', 20.0),).
"""

from __future__ import annotations

import dataclasses
import math
import re

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
  lr_mults: tuple = ()      # ((regex over 'a/b/c' paths, multiplier), ...)


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


def param_path(path) -> str:
  """'cls/predictions/bias' for a tree path."""
  return '/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)


def lr_multipliers(params, lr_mults) -> dict:
  """A tree of floats like `params`: the first (regex, multiplier) of
  `lr_mults` that fully matches a parameter's path, else 1. A pattern that
  matches no parameter is an error (a typo would silently do nothing)."""
  rules = []
  for rule in lr_mults:
    if len(rule) != 2:
      raise ValueError(f'optim.lr_mults entry {rule!r}: use (regex, multiplier)')
    pattern, mult = rule
    try:
      rules.append((re.compile(pattern), float(mult), pattern))
    except re.error as e:
      raise ValueError(f'optim.lr_mults pattern {pattern!r} is not a regex: '
                       f'{e}') from None
  used = set()

  def mult_of(path, _):
    name = param_path(path)
    for regex, mult, pattern in rules:
      if regex.fullmatch(name):
        used.add(pattern)
        return mult
    return 1.0
  tree = jax.tree_util.tree_map_with_path(mult_of, params)
  unused = [p for _, _, p in rules if p not in used]
  if unused:
    names = [param_path(k) for k, _ in jax.tree_util.tree_leaves_with_path(params)]
    raise ValueError(f'optim.lr_mults pattern(s) {unused} match no parameter '
                     f'(paths look like {names[0]!r})')
  return tree


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
  tx = optax.multi_transform({'train': train, 'frozen': optax.set_to_zero()},
                             labels)
  if not cfg.lr_mults:
    return tx            # the state's structure of runs without groups
  mults = lr_multipliers(frozen, cfg.lr_mults)
  scale = optax.stateless(
      lambda updates, params=None: jax.tree.map(lambda u, m: u * m, updates, mults))
  return optax.chain(tx, scale)
