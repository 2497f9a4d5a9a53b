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
