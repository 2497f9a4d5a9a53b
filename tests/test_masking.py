"""Dynamic masking inside tf.data: statistics, specials, determinism, weighting."""

import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')

from jaxdistil.data import masking  # noqa: E402

PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
VOCAB = 1000
CFG = masking.MaskingConfig(vocab_size=VOCAB, mask_id=MASK, pad_id=PAD,
                            special_ids=(PAD, UNK, CLS, SEP, MASK))


def examples(n, length=64, seed=0):
  rng = np.random.default_rng(seed)
  out = np.zeros((n, length), np.int32)
  lengths = rng.integers(12, length + 1, size=n)
  for i, k in enumerate(lengths):
    out[i, 0], out[i, k - 1] = CLS, SEP
    out[i, 1:k - 1] = rng.integers(104, VOCAB, size=k - 2)
    out[i, rng.integers(1, k - 1)] = UNK         # one [UNK] per example
  return out


def run(ids, weights, seed=1, epoch=0, cfg=CFG):
  """Mask every row inside a tf.data map, as the pipeline does."""
  ds = tf.data.Dataset.from_tensor_slices(ids).enumerate().map(
      lambda i, x: masking.mask_example(
          x, masking.example_seed(seed, epoch, i), weights, cfg))
  rows = list(ds.as_numpy_iterator())
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


UNIFORM = masking.token_weights(np.ones(VOCAB), CFG)


def test_masking_statistics_and_specials():
  ids = examples(2000)
  out = run(ids, UNIFORM)
  chosen = out['mlm_mask'] == 1
  candidates = (ids >= 104)
  # 15% of the candidates, exactly in expectation (~130k candidates: sd 0.001).
  assert abs(chosen.sum() / candidates.sum() - 0.15) < 0.004
  # Never a special or padding position.
  assert not chosen[~candidates].any()
  assert np.array_equal(out['labels'], ids)
  assert np.array_equal(out['attention_mask'], (ids != PAD).astype(np.int32))
  np.testing.assert_array_equal(out['input_ids'][~chosen], ids[~chosen])
  masked = out['input_ids'][chosen]
  original = ids[chosen]
  frac_mask = np.mean(masked == MASK)
  frac_same = np.mean(masked == original)
  frac_random = 1 - frac_mask - frac_same
  # ~19.5k chosen tokens: sd ~0.003 for the 80% and ~0.002 for the 10%s.
  assert abs(frac_mask - 0.8) < 0.012
  assert abs(frac_same - 0.1) < 0.01       # (+ random draws equal to the label)
  assert abs(frac_random - 0.1) < 0.01
  randoms = masked[(masked != MASK) & (masked != original)]
  assert randoms.min() >= 0 and randoms.max() < VOCAB
  # Spread over the vocabulary, as the reference draws them.
  assert len(np.unique(randoms)) > 0.5 * min(len(randoms), VOCAB)


def test_same_seed_epoch_and_index_give_the_same_mask():
  ids = examples(50)
  a = run(ids, UNIFORM, seed=3, epoch=2)
  b = run(ids, UNIFORM, seed=3, epoch=2)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  # The mask depends on the example index, not on its neighbours: row 7 alone.
  alone = masking.mask_example(ids[7], masking.example_seed(3, 2, 7), UNIFORM, CFG)
  np.testing.assert_array_equal(alone['input_ids'].numpy(), a['input_ids'][7])


def test_new_epoch_or_seed_gives_a_new_mask():
  ids = examples(50)
  base = run(ids, UNIFORM, seed=3, epoch=0)['mlm_mask']
  for other in (run(ids, UNIFORM, seed=3, epoch=1)['mlm_mask'],
                run(ids, UNIFORM, seed=4, epoch=0)['mlm_mask']):
    assert not np.array_equal(base, other)
    # Independent masks overlap about as often as chance (15% of 15%).
    overlap = (base & other).sum() / max(base.sum(), 1)
    assert overlap < 0.4


def test_smoothed_frequency_weighting_masks_rare_tokens_more():
  cfg = masking.MaskingConfig(vocab_size=VOCAB, mask_id=MASK, pad_id=PAD,
                              special_ids=CFG.special_ids, smoothing=0.7)
  # Token 200 is common (count 10,000), token 300 rare (count 10).
  counts = np.full(VOCAB, 100.0)
  counts[200], counts[300] = 10_000.0, 10.0
  weights = masking.token_weights(counts, cfg)
  assert weights[PAD] == weights[MASK] == weights[CLS] == 0
  np.testing.assert_allclose(weights[300] / weights[200], 1000 ** 0.7, rtol=1e-5)
  # Rows holding one rare, one common and many ordinary tokens.
  ids = np.full((3000, 24), 500, np.int32)
  ids[:, 0], ids[:, -1] = CLS, SEP
  ids[:, 5], ids[:, 9] = 200, 300
  out = run(ids, weights, cfg=cfg)
  rate = lambda col: out['mlm_mask'][:, col].mean()
  # Independent reference: sequential draws proportional to the weights,
  # without replacement (what the reference's torch.multinomial does), with the
  # same stochastically rounded count, in NumPy.
  rng = np.random.default_rng(0)
  row_w = weights[ids[0]].astype(np.float64)
  cand = np.flatnonzero(row_w > 0)
  hits = np.zeros(ids.shape[1])
  trials = 20000
  for _ in range(trials):
    n = int(np.floor(0.15 * len(cand) + rng.random()))
    left = list(cand)
    for _ in range(n):
      p = row_w[left] / row_w[left].sum()
      hits[left.pop(rng.choice(len(left), p=p))] += 1
  expected = hits / trials
  for col in (5, 9, 12):     # common, rare, ordinary
    assert abs(rate(col) - expected[col]) < 0.03, (col, rate(col), expected[col])
  assert rate(9) > 3 * rate(12) > 3 * 3 * rate(5)
  uniform = run(ids, masking.token_weights(counts, CFG))
  assert abs(uniform['mlm_mask'][:, 9].mean() - 0.15) < 0.03


def test_weights_from_another_tokenizer_are_refused():
  with pytest.raises(ValueError, match=r'shape \(10,\), expected \(1000,\)'):
    masking.token_weights(np.ones(10), CFG)


def test_all_special_example_masks_nothing():
  ids = np.array([CLS, SEP] + [PAD] * 10, np.int32)
  out = masking.mask_example(ids, masking.example_seed(0, 0, 0), UNIFORM, CFG)
  assert out['mlm_mask'].numpy().sum() == 0
  np.testing.assert_array_equal(out['input_ids'].numpy(), ids)
