"""Random masked-LM batches in the train step's format, for benchmarks and tests.

Each row is `[CLS] w1 ... wn [SEP] [PAD]...` with n drawn at random (at least half
the length), and 15% of the real, non-special tokens selected for prediction: 80%
of those become [MASK], 10% a random token, 10% stay (the BERT recipe). The real
input pipeline does the same masking inside tf.data; this is NumPy, on the host.
"""

from __future__ import annotations

import numpy as np

PAD, CLS, SEP, MASK = 0, 101, 102, 103    # the bert-base-uncased ids
FIRST_WORD = 104                          # ids below are special or unused


def random_batch(rng: np.random.Generator, batch_size: int, max_len: int,
                 vocab_size: int, mask_prob: float = 0.15,
                 full_length: bool = False) -> dict:
  if vocab_size <= FIRST_WORD:
    raise ValueError(f'vocab_size={vocab_size}: synthetic batches use the BERT '
                     f'special ids, so the vocabulary needs more than {FIRST_WORD}')
  ids = np.full((batch_size, max_len), PAD, np.int32)
  if full_length:
    lengths = np.full(batch_size, max_len)
  else:
    lengths = rng.integers(max(3, max_len // 2), max_len + 1, size=batch_size)
  for i, n in enumerate(lengths):
    ids[i, 0] = CLS
    ids[i, 1:n - 1] = rng.integers(FIRST_WORD, vocab_size, size=n - 2)
    ids[i, n - 1] = SEP
  return _masked(rng, ids, vocab_size, mask_prob)


def _masked(rng: np.random.Generator, ids: np.ndarray, vocab_size: int,
            mask_prob: float) -> dict:
  """The train step's batch of rows `ids`: 15% of the words selected, BERT's
  80/10/10 replacement."""
  attention_mask = (ids != PAD).astype(np.int32)
  candidate = (ids >= FIRST_WORD)
  mlm_mask = candidate & (rng.random(ids.shape) < mask_prob)
  roll = rng.random(ids.shape)
  inputs = ids.copy()
  inputs[mlm_mask & (roll < 0.8)] = MASK
  swap = mlm_mask & (roll >= 0.8) & (roll < 0.9)
  inputs[swap] = rng.integers(FIRST_WORD, vocab_size, size=int(swap.sum()))
  return {'input_ids': inputs, 'attention_mask': attention_mask,
          'labels': ids, 'mlm_mask': mlm_mask.astype(np.int32),
          'token_type_ids': np.zeros_like(ids)}


def random_packed_batch(rng: np.random.Generator, batch_size: int, max_len: int,
                        vocab_size: int, mask_prob: float = 0.15,
                        min_len: int = 8) -> dict:
  """Packed rows, as the pipeline makes them with `packing=True`: random
  sequences `[CLS] w1 ... wn [SEP]` of uniform lengths in [min_len, max_len]
  laid out by `data.packing` (best fit), each row with `segment_ids` (0 for
  padding, then 1, 2, ...) and `position_ids` (restarting at 0 per sequence).
  The first `batch_size` rows the packer closes, the fullest."""
  from jaxdistil.data import packing
  if vocab_size <= FIRST_WORD:
    raise ValueError(f'vocab_size={vocab_size}: synthetic batches use the BERT '
                     f'special ids, so the vocabulary needs more than {FIRST_WORD}')
  low = max(3, min(min_len, max_len))
  count = 4 * batch_size * max_len // ((low + max_len) // 2) + 4
  lengths = rng.integers(low, max_len + 1, size=count)
  order, splits = packing.pack(lengths, np.arange(count), max_len)
  rows = [packing.layout(
      [np.concatenate([[CLS], rng.integers(FIRST_WORD, vocab_size, size=lengths[q] - 2),
                       [SEP]]).astype(np.int32) for q in order[a:b]], max_len, PAD)
          for a, b in zip(splits[:batch_size], splits[1:batch_size + 1])]
  ids, seg, pos = (np.stack(x) for x in zip(*rows))
  out = _masked(rng, ids, vocab_size, mask_prob)
  out.update(segment_ids=seg, position_ids=pos)
  return out


def glue_like_pairs(n: int, vocab_size: int, max_len: int = 128,
                     seed: int = 0, first_word: int = FIRST_WORD) -> dict:
  """`n` encoded sentence pairs of GLUE-like lengths, for inference benchmarks:
  log-normal, median 28 tokens, 90% under 50, within [8, max_len] (the
  bert-base-uncased dev sets measure medians of 10 on CoLA, 24.5 on SST-2, 33
  on WNLI, 53 on MRPC); `[CLS] a [SEP] b [SEP]` of random words, token type 1
  on `b [SEP]`, padded to max_len."""
  rng = np.random.default_rng(seed)
  lengths = np.clip(np.round(rng.lognormal(np.log(28), 0.45, n)), 8,
                    max_len).astype(np.int64)
  ids = np.zeros((n, max_len), np.int32)
  mask = np.zeros((n, max_len), np.int32)
  types = np.zeros((n, max_len), np.int32)
  for i, length in enumerate(lengths):
    ids[i, :length] = rng.integers(first_word, vocab_size, size=length)
    split = 1 + int(rng.integers(1, length - 2))
    ids[i, [0, split, length - 1]] = (CLS, SEP, SEP)
    mask[i, :length] = 1
    types[i, split + 1:length] = 1
  return {'input_ids': ids, 'attention_mask': mask, 'token_type_ids': types}

