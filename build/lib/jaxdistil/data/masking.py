"""Dynamic masked-LM masking inside the tf.data graph, with stateless randomness.

Each example's mask is a pure function of (seed, epoch, example index): the same
example gets a new mask every epoch, and any example's mask can be recomputed
directly, with nothing to replay. That is what makes exact resume possible.

Per example, as the reference DistilBERT code does over a batch:
- candidates are the real tokens that are not special ([CLS], [SEP], [PAD],
  [UNK], [MASK]: the reference gives special tokens probability 0);
- 15% of the candidates are chosen, without replacement (the count is rounded
  stochastically, so the expected proportion is exactly 15%), uniformly or with
  probability proportional to count(token)^-0.7 (smoothed inverse frequency:
  rare tokens are chosen more often). Weighted choice without replacement uses
  Efraimidis-Spirakis keys u^(1/w), taking the largest;
- of the chosen: 80% become [MASK], 10% a token drawn uniformly from the whole
  vocabulary, 10% stay as they are.

Output, per example: `input_ids` (masked), `labels` (the original ids),
`mlm_mask` (1 where the student must predict), `attention_mask`; all int32 of
the padded length, the train step's batch format.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
  vocab_size: int
  mask_id: int
  pad_id: int
  special_ids: tuple[int, ...]      # never chosen (pad and mask included)
  mask_prob: float = 0.15
  mask_token_prob: float = 0.8      # of the chosen: become [MASK]
  random_token_prob: float = 0.1    # of the chosen: become a random token
  smoothing: float = 0.0            # 0: uniform choice; 0.7: the reference's


def token_weights(counts: np.ndarray, cfg: MaskingConfig) -> np.ndarray:
  """Choice weight per vocabulary id: count^-smoothing, special ids 0.

  With smoothing 0 every non-special token weighs 1. Unseen tokens count as 1,
  as in the reference (`max(count, 1)`).
  """
  counts = np.asarray(counts, np.float64)
  if counts.shape != (cfg.vocab_size,):
    raise ValueError(f'token counts have shape {counts.shape}, expected '
                     f'({cfg.vocab_size},): were they made with this tokenizer?')
  weights = np.maximum(counts, 1.0) ** -cfg.smoothing
  weights[list(cfg.special_ids)] = 0.0
  return weights.astype(np.float32)


def example_seed(seed: int, epoch, index):
  """The stateless seed of one example: fold (epoch, index) into the run seed."""
  base = tf.constant([seed & 0x7FFFFFFF, 0x5EED], tf.int64)
  with_epoch = tf.random.experimental.stateless_fold_in(
      base, tf.cast(epoch, tf.int64))
  return tf.random.experimental.stateless_fold_in(with_epoch,
                                                  tf.cast(index, tf.int64))


def mask_example(ids, seed, weights, cfg: MaskingConfig) -> dict:
  """Mask one padded example `ids` [L] (int32) given its stateless `seed` [2]."""
  ids = tf.convert_to_tensor(ids, tf.int32)
  length = tf.shape(ids)[0]
  w = tf.gather(tf.convert_to_tensor(weights, tf.float32), ids)
  candidate = w > 0.0
  seeds = tf.random.experimental.stateless_split(seed, 4)

  # How many: 15% of the candidates, rounded stochastically.
  n_candidates = tf.reduce_sum(tf.cast(candidate, tf.float32))
  u_count = tf.random.stateless_uniform([], seeds[0])
  n_mask = tf.cast(tf.floor(cfg.mask_prob * n_candidates + u_count), tf.int32)

  # Which: the n_mask largest keys log(u) / w (= u^(1/w), order-preserving).
  u = tf.random.stateless_uniform([length], seeds[1], minval=1e-12, maxval=1.0)
  keys = tf.where(candidate, tf.math.log(u) / tf.maximum(w, 1e-30),
                  tf.constant(-np.inf, tf.float32))
  order = tf.argsort(keys, direction='DESCENDING', stable=True)
  rank = tf.scatter_nd(order[:, None], tf.range(length), [length])
  chosen = (rank < n_mask) & candidate

  # What they become: 80% [MASK], 10% random, 10% unchanged.
  r = tf.random.stateless_uniform([length], seeds[2])
  random_ids = tf.random.stateless_uniform([length], seeds[3], minval=0,
                                           maxval=cfg.vocab_size, dtype=tf.int32)
  to_mask = chosen & (r < cfg.mask_token_prob)
  to_random = chosen & (r >= cfg.mask_token_prob) & (
      r < cfg.mask_token_prob + cfg.random_token_prob)
  inputs = tf.where(to_mask, cfg.mask_id, tf.where(to_random, random_ids, ids))
  return {'input_ids': inputs, 'labels': ids,
          'mlm_mask': tf.cast(chosen, tf.int32),
          'attention_mask': tf.cast(tf.not_equal(ids, cfg.pad_id), tf.int32)}
