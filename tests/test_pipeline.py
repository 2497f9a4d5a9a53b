"""The training input pipeline: exact resume, host split, epochs, global batch."""

import os

import jax
import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')

import helpers  # noqa: E402
from jaxdistil import sharding  # noqa: E402
from jaxdistil.data import pipeline  # noqa: E402
from jaxdistil.data import corpus as corpus_lib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = helpers.vocab_dir()
PIECES = open(os.path.join(VOCAB, 'vocab.txt'), encoding='utf-8').read().splitlines()
CLS, SEP = PIECES.index('[CLS]'), PIECES.index('[SEP]')


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """~300 sequences of 12-32 tokens in 12 shards, from a generated text whose
  words follow Zipf's law (so some tokens are common and many rare)."""
  words = [w for w in open(os.path.join(VOCAB, 'vocab.txt')).read().split('\n')
           if w.isalpha() and len(w) > 3][:3000]
  rng = np.random.default_rng(0)
  zipf = 1.0 / np.arange(1, len(words) + 1)
  zipf /= zipf.sum()
  text = '\n\n'.join(' '.join(rng.choice(words, size=rng.integers(15, 45), p=zipf))
                      for _ in range(300))
  d = tmp_path_factory.mktemp('data')
  (d / 'corpus.txt').write_text(text)
  out = str(d / 'prepared')
  corpus_lib.prepare(str(d / 'corpus.txt'), VOCAB, 32, out, fmt='text',
                      shard_size=25, progress_bar=False)
  return out


def take(p, n):
  return [next(p) for _ in range(n)]


def assert_same(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def every_sequence(prepared):
  """{token tuple: shard index} of every prepared sequence, read by tf.data."""
  meta = corpus_lib.read_metadata(prepared)
  out = {}
  for k, shard in enumerate(meta['shards']):
    for rec in tf.data.TFRecordDataset(os.path.join(prepared, shard['file'])):
      out[tuple(int(t) for t in np.frombuffer(rec.numpy(), np.uint16))] = k
  return out


def sequences_of(batch):
  """The sequences (token tuples of the true labels) in a batch's rows, in row
  order; rows are split by their segment ids (packed) or padding (unpacked)."""
  out = []
  seg = batch.get('segment_ids', batch['attention_mask'])
  for labels, s in zip(batch['labels'], seg):
    for k in range(1, int(s.max()) + 1):
      out.append(tuple(int(t) for t in labels[s == k]))
  return out


@pytest.mark.parametrize('packing', [True, False])
def test_resume_from_any_position_yields_the_same_batches(prepared, packing):
  cfg = pipeline.InputConfig(prepared, batch_size=8, seed=3, packing=packing)
  p = pipeline.Pipeline(cfg)
  per_epoch = p.batches_per_epoch
  assert 5 < per_epoch < 60
  positions, batches = [], []
  for _ in range(per_epoch + 6):          # cross one epoch boundary
    positions.append(dict(p.position))
    batches.append(next(p))
  for k in (0, 1, 3, per_epoch - 1, per_epoch, per_epoch + 2):
    q = pipeline.Pipeline(cfg, position=positions[k])
    for got, want in zip(take(q, 3), batches[k:k + 3]):
      assert_same(got, want)
  assert positions[per_epoch] == {'epoch': 1, 'batch': 0}


def test_epochs_reshuffle_and_remask(prepared):
  cfg = pipeline.InputConfig(prepared, batch_size=1, seed=3, packing=False)
  p = pipeline.Pipeline(cfg)
  n = p.batches_per_epoch
  epoch0, epoch1 = take(p, n), take(p, n)
  rows = lambda bs: sorted(tuple(b['labels'][0]) for b in bs)
  assert rows(epoch0) == rows(epoch1)          # the same sequences...
  assert [tuple(b['labels'][0]) for b in epoch0] != [tuple(b['labels'][0])
                                                     for b in epoch1]  # reordered
  mask0 = {tuple(b['labels'][0]): tuple(b['mlm_mask'][0]) for b in epoch0}
  mask1 = {tuple(b['labels'][0]): tuple(b['mlm_mask'][0]) for b in epoch1}
  assert sum(mask0[k] != mask1[k] for k in mask0) > 0.8 * len(mask0)


def test_packed_rows_hold_every_sequence_once_an_epoch(prepared):
  every = every_sequence(prepared)
  p = pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=1, seed=5,
                                             max_len=64))
  assert p.rows(0) == p.batches_per_epoch      # batch 1: nothing dropped
  seen, real, total = [], 0, 0
  for b in take(p, p.batches_per_epoch):
    seg, pos, ids = b['segment_ids'][0], b['position_ids'][0], b['labels'][0]
    assert b['input_ids'].shape == (1, 64)
    n = int(seg.max())
    assert n >= 1 and list(np.unique(seg[seg > 0])) == list(range(1, n + 1))
    assert (np.diff(seg[seg > 0]) >= 0).all() and (seg[seg > 0] > 0).all()
    assert (seg[int((seg > 0).sum()):] == 0).all()         # padding at the end
    for k in range(1, n + 1):
      np.testing.assert_array_equal(pos[seg == k], np.arange((seg == k).sum()))
      assert ids[seg == k][0] == CLS and ids[seg == k][-1] == SEP
    np.testing.assert_array_equal(b['attention_mask'][0], seg > 0)
    assert not b['mlm_mask'][0][seg == 0].any()
    real += int((seg > 0).sum())
    total += seg.size
    seen += sequences_of(b)
  assert sorted(seen) == sorted(every)
  # Sequences of 12-32 tokens in rows of 64: best fit leaves little room.
  assert 1 - real / total < 0.12, 1 - real / total


def test_the_plan_is_a_function_of_seed_and_epoch(prepared):
  make = lambda seed: pipeline.Pipeline(pipeline.InputConfig(
      prepared, batch_size=4, seed=seed, max_len=64))
  a, b, c = make(1), make(1), make(2)
  for x, y in zip(a.plan(0), b.plan(0)):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.plan(0)[0], c.plan(0)[0])
  assert not np.array_equal(a.plan(0)[0], a.plan(1)[0])


def _shard_mix_statistic(batches_of_shards, num_shards):
  """Sum over batches of the chi-square of the batch's shard counts against
  the shard mix of everything: large when batches are drawn from few shards."""
  every = np.concatenate(batches_of_shards)
  share = np.bincount(every, minlength=num_shards) / len(every)
  total = 0.0
  for b in batches_of_shards:
    expected = share * len(b)
    counts = np.bincount(b, minlength=num_shards)
    total += float(np.sum((counts - expected) ** 2 / np.maximum(expected, 1e-9)))
  return total


def test_batches_mix_shards_as_a_uniform_shuffle_does(prepared):
  """The mix of shards within batches matches a uniform shuffle of the whole
  corpus (a Monte Carlo test of the chi-square statistic above); a shard-by-
  shard shuffle, the pipeline's former order, fails the same test."""
  every = every_sequence(prepared)
  num_shards = len(corpus_lib.read_metadata(prepared)['shards'])
  assert num_shards >= 10
  p = pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=4, seed=11,
                                             max_len=64))
  observed = [np.asarray([every[q] for q in sequences_of(b)])
              for b in take(p, p.batches_per_epoch)]
  sizes = [len(b) for b in observed]
  stat = _shard_mix_statistic(observed, num_shards)

  labels = np.asarray(list(every.values()))
  rng = np.random.default_rng(0)

  def split(order):
    return np.split(labels[order][:sum(sizes)], np.cumsum(sizes)[:-1])

  uniform = [_shard_mix_statistic(split(rng.permutation(len(labels))), num_shards)
             for _ in range(400)]
  lo, hi = np.quantile(uniform, [0.001, 0.999])
  assert lo <= stat <= hi, (stat, lo, hi)

  def shard_by_shard():                # shards permuted, then rows within each
    by_shard = [np.flatnonzero(labels == k) for k in range(num_shards)]
    return np.concatenate([rng.permutation(by_shard[k])
                           for k in rng.permutation(num_shards)])
  former = _shard_mix_statistic(split(shard_by_shard()), num_shards)
  assert former > hi, (former, hi)


def test_two_hosts_read_disjoint_examples_that_cover_the_data(prepared):
  every = every_sequence(prepared)
  seen = []
  for host in (0, 1):
    cfg = pipeline.InputConfig(prepared, batch_size=1, seed=3, process_index=host,
                               process_count=2)
    p = pipeline.Pipeline(cfg)
    seen.append({q for b in take(p, p.batches_per_epoch) for q in sequences_of(b)})
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(every)


@pytest.mark.parametrize('packing', [True, False])
def test_batches_are_fixed_shape_and_masked(prepared, packing):
  p = pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=8,
                                             packing=packing))
  b = next(p)
  keys = {'input_ids', 'labels', 'mlm_mask', 'attention_mask'}
  if packing:
    keys |= {'segment_ids', 'position_ids'}
  assert set(b) == keys
  assert {k: v.shape for k, v in b.items()} == {k: (8, 32) for k in b}
  assert b['mlm_mask'].sum() > 0
  assert not b['mlm_mask'][b['attention_mask'] == 0].any()


def test_host_batches_become_one_global_array(prepared):
  mesh = sharding.make_mesh({'data': -1, 'fsdp': 1, 'tensor': 1})
  p = pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=16))
  local = next(p)
  arrays = sharding.global_batch(local, mesh)
  assert arrays['input_ids'].shape == (16, 32)
  assert len(arrays['input_ids'].addressable_shards) == len(jax.devices())
  np.testing.assert_array_equal(np.asarray(arrays['labels']), local['labels'])


def test_bad_prepared_directories(prepared, tmp_path):
  with pytest.raises(pipeline.InputError, match='no metadata.json'):
    pipeline.Pipeline(pipeline.InputConfig(str(tmp_path), batch_size=4))
  with pytest.raises(pipeline.InputError, match=f'vocabulary of {len(PIECES)} '
                                                f'but the teacher has 128'):
    pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=4),
                      expected_vocab_size=128)
  with pytest.raises(pipeline.InputError, match='cannot feed 100 hosts'):
    pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=4,
                                           process_count=100))
  with pytest.raises(pipeline.InputError, match='no batch of 100000'):
    pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=100000))
  with pytest.raises(pipeline.InputError, match=r'sequences of up to 32 tokens, '
                     r'longer than rows of max_len=16: set max_len=32'):
    pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=4, max_len=16))


def test_a_damaged_shard_is_named_and_left_alone(prepared, tmp_path):
  import shutil
  copy = tmp_path / 'copy'
  shutil.copytree(prepared, copy)
  shard = copy / corpus_lib.read_metadata(prepared)['shards'][2]['file']
  data = shard.read_bytes()
  shard.write_bytes(data[:-7])
  with pytest.raises(pipeline.InputError) as e:
    pipeline.Pipeline(pipeline.InputConfig(str(copy), batch_size=4))
  assert 'shard-00002' in str(e.value) and 'prepare' in str(e.value)
  assert '\n' not in str(e.value)
  assert shard.read_bytes() == data[:-7]          # untouched


def test_an_older_preparation_packs_too(prepared, tmp_path):
  """Directories from before packing (no tokenizer/ folder, the same shard
  format) are read and packed as they are."""
  import shutil
  old = tmp_path / 'old'
  shutil.copytree(prepared, old, ignore=shutil.ignore_patterns('tokenizer'))
  p = pipeline.Pipeline(pipeline.InputConfig(str(old), batch_size=2, max_len=64))
  b = next(p)
  assert b['segment_ids'].max() >= 2


def test_train_and_eval_splits_hold_out_the_last_shard(prepared):
  meta = corpus_lib.read_metadata(prepared)
  train = pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=1,
                                                 split='train', packing=False))
  held = pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=1,
                                                split='eval', packing=False))
  assert held.batches_per_epoch == meta['shards'][-1]['sequences']
  assert train.batches_per_epoch == meta['num_sequences'] - held.batches_per_epoch
  rows = lambda p: {tuple(b['labels'][0]) for b in take(p, p.batches_per_epoch)}
  assert not rows(train) & rows(held)


def _config(prepared, **masking):
  from jaxdistil import config_lib
  c = config_lib.default_config()
  c.data, c.max_len, c.batch_size = prepared, 32, 8
  c.masking.update(masking)
  return c


@pytest.mark.slow
def test_masking_knobs_reach_the_batches_from_the_train_entry_point(prepared):
  """batches.make_data (what `python -m jaxdistil.train` reads batches with)
  applies config.masking: the masked share and the 80/10/10 split, and with
  smoothing a rare token is masked more often than a common one."""
  from jaxdistil.data import batches
  meta = corpus_lib.read_metadata(prepared)
  mask_id = meta['special_ids']['mask']

  def rates(c):
    data = batches.make_data(c, None)
    chosen = np.zeros(meta['vocab_size'])
    seen = np.zeros(meta['vocab_size'])
    as_mask = picked = 0
    for b in take(data, data.batches_per_epoch * 3):
      real = b['attention_mask'] > 0
      np.add.at(seen, b['labels'][real], 1)
      np.add.at(chosen, b['labels'][b['mlm_mask'] > 0], 1)
      as_mask += int((b['input_ids'][b['mlm_mask'] > 0] == mask_id).sum())
      picked += int(b['mlm_mask'].sum())
    return chosen, seen, as_mask / picked

  chosen, seen, mask_share = rates(_config(prepared, mask_prob=0.3, mask_token=0.5,
                                           random_token=0.25, keep=0.25))
  candidates = seen.copy()
  candidates[list(set(meta['special_ids'].values()))] = 0
  assert abs(chosen.sum() / candidates.sum() - 0.3) < 0.02
  assert abs(mask_share - 0.5) < 0.04

  counts = np.load(os.path.join(prepared, 'token_counts.npy'))
  common = np.argsort(-np.where(candidates > 0, counts, 0))[:5]
  rare = np.flatnonzero((counts > 0) & (counts <= 3) & (candidates > 0))
  for smoothing, more in ((0.7, True), (0.0, False)):
    chosen, seen, _ = rates(_config(prepared, smoothing=smoothing))
    rare_rate = chosen[rare].sum() / seen[rare].sum()
    common_rate = chosen[common].sum() / seen[common].sum()
    if more:
      assert rare_rate > 2 * common_rate, (rare_rate, common_rate)
    else:
      assert 0.6 < rare_rate / common_rate < 1.6, (rare_rate, common_rate)
