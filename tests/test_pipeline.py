"""The training input pipeline: exact resume, host split, epochs, global batch."""

import os

import jax
import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')

from jaxdistil import sharding  # noqa: E402
from jaxdistil.data import pipeline  # noqa: E402
from jaxdistil.data import prepare as prepare_lib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(ROOT, '..', 'shared', 'data', 'vocab')
pytestmark = pytest.mark.skipif(not os.path.exists(VOCAB),
                                reason='../shared/data is not present')


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """~300 sequences of 12-32 tokens in 6 shards, from a generated text."""
  words = [w for w in open(os.path.join(VOCAB, 'vocab.txt')).read().split('\n')
           if w.isalpha() and len(w) > 3][:3000]
  rng = np.random.default_rng(0)
  text = '\n\n'.join(' '.join(rng.choice(words, size=rng.integers(15, 45)))
                     for _ in range(300))
  d = tmp_path_factory.mktemp('data')
  (d / 'corpus.txt').write_text(text)
  out = str(d / 'prepared')
  prepare_lib.prepare(str(d / 'corpus.txt'), VOCAB, 32, out, fmt='text',
                      shard_size=50, progress_bar=False)
  return out


def take(p, n):
  return [next(p) for _ in range(n)]


def assert_same(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_from_any_position_yields_the_same_batches(prepared):
  cfg = pipeline.InputConfig(prepared, batch_size=16, seed=3)
  p = pipeline.Pipeline(cfg)
  per_epoch = p.batches_per_epoch
  assert 10 < per_epoch < 30
  positions, batches = [], []
  for _ in range(per_epoch + 6):          # cross one epoch boundary
    positions.append(dict(p.position))
    batches.append(next(p))
  for k in (0, 1, 7, per_epoch - 1, per_epoch, per_epoch + 2):
    q = pipeline.Pipeline(cfg, position=positions[k])
    for got, want in zip(take(q, 3), batches[k:k + 3]):
      assert_same(got, want)
  assert positions[per_epoch] == {'epoch': 1, 'batch': 0}


def test_epochs_reshuffle_and_remask(prepared):
  cfg = pipeline.InputConfig(prepared, batch_size=1, seed=3)
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


def test_two_hosts_read_disjoint_examples_that_cover_the_data(prepared):
  meta = prepare_lib.read_metadata(prepared)
  every = []
  for shard in meta['shards']:
    for rec in tf.data.TFRecordDataset(os.path.join(prepared, shard['file'])):
      every.append(tuple(np.frombuffer(rec.numpy(), np.uint16)))
  seen = []
  for host in (0, 1):
    cfg = pipeline.InputConfig(prepared, batch_size=1, seed=3, process_index=host,
                               process_count=2)
    p = pipeline.Pipeline(cfg)
    seen.append({tuple(int(t) for t in b['labels'][0][b['attention_mask'][0] > 0])
                 for b in take(p, p.batches_per_epoch)})
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(every)


def test_batches_are_fixed_shape_and_masked(prepared):
  p = pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=8))
  b = next(p)
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
  with pytest.raises(pipeline.InputError, match='vocabulary of 30522 but the '
                                                'teacher has 128'):
    pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=4),
                      expected_vocab_size=128)
  with pytest.raises(pipeline.InputError, match='cannot feed 100 hosts'):
    pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=4,
                                           process_count=100))
  with pytest.raises(pipeline.InputError, match='make no batch of 100000'):
    pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=100000))


def test_train_and_eval_splits_hold_out_the_last_shard(prepared):
  meta = prepare_lib.read_metadata(prepared)
  train = pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=1,
                                                 split='train'))
  held = pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=1,
                                                split='eval'))
  assert held.batches_per_epoch == meta['shards'][-1]['sequences']
  assert train.batches_per_epoch == meta['num_sequences'] - held.batches_per_epoch
  rows = lambda p: {tuple(b['labels'][0]) for b in take(p, p.batches_per_epoch)}
  assert not rows(train) & rows(held)
