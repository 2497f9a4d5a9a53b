"""Batch plans for GLUE fine-tuning, in pure NumPy: which rows go into each
step's batch and the length each batch is padded to.

Batches are cut to length buckets (`bucket_lengths`): each example is padded
only to the smallest of a few fixed lengths that holds it, so each bucket is
one compiled shape. A training epoch shuffles, groups the examples by bucket,
cuts each group into batches and shuffles the batches (`epoch_batches`); dev
sets are sorted by length (`eval_plan`). `padded_rows` gathers a batch's
rows, padding a short one with zero-weight copies; only the token arrays are
cut to the batch's length (per-example arrays such as a teacher's logits are
not).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from jaxdistil.glue import data as glue_data
from jaxdistil.glue.tasks import GlueError

# The arrays that are [rows, tokens] and so are cut to a batch's length.
TOKEN_KEYS = ('input_ids', 'attention_mask', 'token_type_ids')


def padded_rows(arrays: dict, index: np.ndarray, size: int,
                length: int | None = None) -> dict:
  """Rows `index` padded to `size` with zero-weight copies of row index[0],
  the token arrays cut to their first `length` columns (all when None)."""
  real = len(index)
  full = np.concatenate([index, np.full(size - real, index[0], index.dtype)])
  out = {k: v[full, :length] if k in TOKEN_KEYS else v[full]
         for k, v in arrays.items()}
  out['weights'] = (np.arange(size) < real).astype(np.float32)
  return out


def train_indexes(n: int, batch_size: int, total_steps: int, seed: int):
  """Per step, the example indexes: a new permutation every epoch; the last
  batch of an epoch is short (and padded later)."""
  rng = np.random.default_rng(seed)
  per_epoch = math.ceil(n / batch_size)
  perm = None
  for step in range(total_steps):
    i = step % per_epoch
    if i == 0:
      perm = rng.permutation(n)
    yield perm[i * batch_size:(i + 1) * batch_size]


# ----------------------------------------------------------------------------
# Length buckets and batch plans (pure NumPy: which rows, padded to what length)

class Batch(NamedTuple):
  index: np.ndarray     # example rows, at most batch_size (the rest is padding)
  length: int           # the padded sequence length: the batch's bucket


def bucket_lengths(max_len: int, buckets: bool | Sequence[int] = True
                   ) -> tuple[int, ...]:
  """The padded lengths batches may have, ascending, max_len always last.

  True: the lengths 2^k and 3*2^(k-1) from 8 below max_len, then max_len (8,
  12, 16, 24, 32, 48, 64, 96, 128 for 128). Consecutive ones differ by at most
  1.5x, so a row longer than 8 tokens is padded by under a third of its
  bucket, while the count (one compile each) grows only as 2*log2(max_len/8):
  a linear grid (multiples of 16) pads CoLA 37% at 8 shapes, this set 15% at
  9, and at max_len 512 it is 13 shapes against 32. All are multiples of 4,
  and from 16 on of 8, which accelerators tile well. False: (max_len,), the
  fixed-length batches of before. A sequence of lengths: those, plus max_len.
  """
  if buckets is True:
    grid = sorted({2 ** k for k in range(3, 20)} |
                  {3 * 2 ** k for k in range(2, 20)})
    return tuple(b for b in grid if b < max_len) + (max_len,)
  if buckets is False or buckets is None:
    return (max_len,)
  try:
    chosen = sorted({int(b) for b in buckets})
  except (TypeError, ValueError):
    raise GlueError(f'length_buckets={buckets!r}: give True, False or a list of '
                    f'lengths such as (32, 64, 128)') from None
  bad = [b for b in chosen if not 1 <= b <= max_len]
  if bad:
    raise GlueError(f'length_buckets={tuple(buckets)}: length {bad[0]} is not '
                    f'in 1..max_len={max_len}; drop it or raise max_len')
  return tuple(b for b in chosen if b < max_len) + (max_len,)


def bucket_of(lengths, buckets: Sequence[int]) -> np.ndarray:
  """The smallest bucket that holds each length (lengths <= buckets[-1])."""
  return np.asarray(buckets)[np.searchsorted(buckets, lengths, side='left')]


def epoch_batches(lengths: np.ndarray, batch_size: int,
                  buckets: Sequence[int], rng) -> list[Batch]:
  """One training epoch: shuffle, group by bucket (shuffled within), cut each
  group into batches of batch_size (its last one short), shuffle the batches.
  Every example is in exactly one batch, padded to its own bucket."""
  perm = rng.permutation(len(lengths))
  padded = bucket_of(lengths[perm], buckets)
  batches = []
  for b in buckets:
    rows = perm[padded == b]
    batches += [Batch(rows[i:i + batch_size], int(b))
                for i in range(0, len(rows), batch_size)]
  return [batches[i] for i in rng.permutation(len(batches))]


def steps_per_epoch(lengths: np.ndarray, batch_size: int,
                    buckets: Sequence[int]) -> int:
  """The batches of one epoch of `epoch_batches`: ceil(count / batch_size)
  per bucket; ceil(n / batch_size) with one bucket."""
  if len(buckets) == 1:
    return math.ceil(len(lengths) / batch_size)
  counts = np.bincount(np.searchsorted(buckets, lengths, side='left'),
                       minlength=len(buckets))
  return int(sum(math.ceil(c / batch_size) for c in counts))


def train_plan(lengths: np.ndarray, batch_size: int, steps: int, seed: int,
               buckets: Sequence[int]):
  """Per step, a `Batch`; deterministic given the seed. With one bucket it is
  `train_indexes` (the order of fixed-length batching), else `epoch_batches`
  epoch after epoch, a partial last epoch taking its first batches."""
  if len(buckets) == 1:
    for index in train_indexes(len(lengths), batch_size, steps, seed):
      yield Batch(index, int(buckets[0]))
    return
  rng = np.random.default_rng(seed)
  step = 0
  while step < steps:
    for batch in epoch_batches(lengths, batch_size, buckets, rng)[:steps - step]:
      yield batch
      step += 1


def eval_plan(lengths: np.ndarray, batch_size: int,
              buckets: Sequence[int]) -> list[Batch]:
  """Prediction batches: by ascending length, each padded to the bucket of
  its longest row, so rows of similar length share a batch. The one short
  batch holds the shortest rows, where its zero-weight rows cost least. With
  one bucket, the rows in their order."""
  n = len(lengths)
  if len(buckets) == 1:
    return [Batch(np.arange(s, min(s + batch_size, n)), int(buckets[0]))
            for s in range(0, n, batch_size)]
  order = np.argsort(lengths, kind='stable')
  starts = [0] + list(range(n % batch_size or batch_size, n, batch_size))
  return [Batch(index, int(bucket_of(lengths[index].max(), buckets)))
          for index in (order[a:b] for a, b in zip(starts, starts[1:] + [n]))]


def token_counts(lengths: np.ndarray, plan, batch_size: int) -> tuple[int, int]:
  """(real tokens, all tokens) of the padded batches of `plan`."""
  real = total = 0
  for batch in plan:
    real += int(lengths[batch.index].sum())
    total += batch_size * batch.length
  return real, total


def padding_fraction(lengths: np.ndarray, plan, batch_size: int) -> float:
  """Padding tokens over all tokens of the batches, zero-weight rows included:
  the share of the model's work spent on padding."""
  real, total = token_counts(lengths, plan, batch_size)
  return 1.0 - real / max(total, 1)


def eval_padding_fraction(dev: dict, batch_size: int,
                          buckets: Sequence[int]) -> float:
  """`padding_fraction` of the prediction batches of all the dev sets."""
  counts = [token_counts(lengths, eval_plan(lengths, batch_size, buckets),
                         batch_size)
            for lengths in map(glue_data.lengths, dev.values())]
  return 1.0 - sum(r for r, _ in counts) / max(sum(t for _, t in counts), 1)


def total_steps(lengths, cfg) -> int:
  """The run's steps: max_steps, else ceil(epochs * steps_per_epoch).

  `lengths` are the training rows' token counts (`glue_data.lengths`); a plain
  count n stands for n rows of unknown length, batched as one bucket."""
  if cfg.max_steps:
    return int(cfg.max_steps)
  if np.ndim(lengths) == 0:
    per_epoch = math.ceil(int(lengths) / cfg.batch_size)
  else:
    per_epoch = steps_per_epoch(np.asarray(lengths), cfg.batch_size,
                                bucket_lengths(cfg.max_len, cfg.length_buckets))
  return max(1, math.ceil(cfg.epochs * per_epoch))
