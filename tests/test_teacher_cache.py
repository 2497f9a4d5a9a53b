"""The teacher-logit cache: computed once then served byte for byte; another
teacher or other data refused in one line with the old file untouched; an
interrupted computation or write leaves no file; the fingerprints see every
weight and every text."""

import os

import jax
import numpy as np
import pytest

from jaxdistil.glue import teacher_cache as tc
from jaxdistil.glue.data import Examples
from jaxdistil.glue.tasks import GlueError
from jaxdistil.models import bert


def examples(texts_b=True):
  a = ['the cat sat .', 'a dog ran', 'it rained all day']
  b = ['on the mat', 'far away', 'so we stayed in'] if texts_b else None
  return Examples(a, b, np.zeros(3, np.int32), 'test')


class Counter:
  def __init__(self, logits):
    self.logits, self.calls = logits, 0

  def __call__(self):
    self.calls += 1
    return self.logits


def logits(seed=0):
  return np.random.default_rng(seed).standard_normal((3, 2)).astype(np.float32)


def test_computed_once_then_served_byte_for_byte(tmp_path):
  compute = Counter(logits())
  args = (str(tmp_path), 'MRPC', 'train', 'T' * 64, 'D' * 64)
  first = tc.load_or_compute(*args, compute)
  second = tc.load_or_compute(*args, compute)
  assert compute.calls == 1
  assert first.tobytes() == second.tobytes() == compute.logits.tobytes()
  assert first.dtype == second.dtype and first.shape == second.shape
  # another split is its own file
  tc.load_or_compute(str(tmp_path), 'MRPC', 'dev', 'T' * 64, 'D' * 64, compute)
  assert compute.calls == 2
  assert sorted(os.listdir(tmp_path)) == ['teacher_logits.MRPC.dev.npz',
                                          'teacher_logits.MRPC.train.npz']


@pytest.mark.parametrize('changed, word', [('teacher', 'another teacher'),
                                           ('data', 'other data')])
def test_another_teacher_or_other_data_is_refused(tmp_path, changed, word):
  tc.load_or_compute(str(tmp_path), 'SST-2', 'train', 'T1', 'D1',
                     Counter(logits()))
  path = tc.cache_path(str(tmp_path), 'SST-2', 'train')
  before = open(path, 'rb').read()
  teacher, data = ('T2', 'D1') if changed == 'teacher' else ('T1', 'D2')
  compute = Counter(logits(1))
  with pytest.raises(GlueError) as e:
    tc.load_or_compute(str(tmp_path), 'SST-2', 'train', teacher, data, compute)
  message = str(e.value)
  assert '\n' not in message and word in message
  assert 'remove' in message and 'another workdir' in message
  assert ('teacher' in message) and (changed == 'data' or 'data' not in message)
  assert compute.calls == 0
  assert open(path, 'rb').read() == before
  with pytest.raises(GlueError, match='another teacher and over other data'):
    tc.load_or_compute(str(tmp_path), 'SST-2', 'train', 'T2', 'D2', compute)


def test_an_interrupted_compute_or_write_leaves_no_cache(tmp_path, monkeypatch):
  def boom():
    raise KeyboardInterrupt
  with pytest.raises(KeyboardInterrupt):
    tc.load_or_compute(str(tmp_path), 'RTE', 'train', 'T', 'D', boom)
  assert not os.path.exists(tc.cache_path(str(tmp_path), 'RTE', 'train'))

  real_savez = np.savez

  def half_then_crash(f, **arrays):     # writes part of the file, then dies
    f.write(b'PK\x03\x04 half a zip')
    raise OSError('disk full')
  monkeypatch.setattr(np, 'savez', half_then_crash)
  with pytest.raises(OSError):
    tc.load_or_compute(str(tmp_path), 'RTE', 'train', 'T', 'D', Counter(logits()))
  assert os.listdir(tmp_path) == []
  monkeypatch.setattr(np, 'savez', real_savez)
  # non-finite logits are refused before anything is written
  bad = logits()
  bad[1, 0] = np.nan
  with pytest.raises(GlueError, match='finite'):
    tc.load_or_compute(str(tmp_path), 'RTE', 'train', 'T', 'D', Counter(bad))
  assert os.listdir(tmp_path) == []
  # and a good run afterwards works
  out = tc.load_or_compute(str(tmp_path), 'RTE', 'train', 'T', 'D',
                           Counter(logits()))
  assert out.tobytes() == logits().tobytes()


def test_a_corrupt_cache_file_is_one_line(tmp_path):
  path = tc.cache_path(str(tmp_path), 'CoLA', 'train')
  with open(path, 'wb') as f:
    f.write(b'not a zip')
  with pytest.raises(GlueError) as e:
    tc.load_or_compute(str(tmp_path), 'CoLA', 'train', 'T', 'D', Counter(logits()))
  assert '\n' not in str(e.value) and 'remove the file' in str(e.value)


def test_examples_fingerprint_sees_texts_order_columns_max_len_and_tokenizer():
  base = tc.fingerprint_examples(examples(), 128, 'vocab-a')
  assert base == tc.fingerprint_examples(examples(), 128, 'vocab-a')
  changed = examples()
  changed.text_b[2] = 'so we stayed out'
  swapped = examples().take(np.array([1, 0, 2]))
  moved = Examples(['the cat sat . on', 'a dog ran', 'it rained all day'],
                   ['the mat', 'far away', 'so we stayed in'],
                   np.zeros(3, np.int32), 'test')
  relabelled = examples()
  relabelled.labels[:] = 1
  others = [tc.fingerprint_examples(changed, 128, 'vocab-a'),
            tc.fingerprint_examples(swapped, 128, 'vocab-a'),
            tc.fingerprint_examples(moved, 128, 'vocab-a'),
            tc.fingerprint_examples(examples(False), 128, 'vocab-a'),
            tc.fingerprint_examples(examples(), 64, 'vocab-a'),
            tc.fingerprint_examples(examples(), 128, 'vocab-b'),
            tc.fingerprint_examples(examples(), 128, 'vocab-a', style='roberta')]
  assert len(set(others + [base])) == len(others) + 1
  # labels are not part of it: the teacher never sees them
  assert tc.fingerprint_examples(relabelled, 128, 'vocab-a') == base


def test_examples_fingerprint_of_a_tokenizer_object():
  from jaxdistil.data import tokenizer
  from helpers import SHIPPED_VOCAB
  tok = tokenizer.load(SHIPPED_VOCAB)
  assert (tc.fingerprint_examples(examples(), 32, tok) ==
          tc.fingerprint_examples(examples(), 32, tokenizer.fingerprint(tok)))


def test_teacher_fingerprint_sees_every_weight():
  cfg = bert.BertConfig(vocab_size=40, hidden_size=8, num_layers=1, num_heads=2,
                        intermediate_size=16, max_position_embeddings=16)
  params = jax.device_get(bert.init(cfg, jax.random.key(0)))
  base = tc.fingerprint_teacher((cfg, params))
  assert base == tc.fingerprint_teacher({'config': cfg, 'params': params})
  leaves, treedef = jax.tree.flatten(params)
  seen = {base}
  for i in range(len(leaves)):     # one float nudged in each array in turn
    nudged = [np.array(x) for x in leaves]
    flat = nudged[i].reshape(-1)
    flat[-1] = np.nextafter(flat[-1], np.float32(np.inf))
    seen.add(tc.fingerprint_teacher((cfg, jax.tree.unflatten(treedef, nudged))))
  assert len(seen) == len(leaves) + 1
  assert tc.fingerprint_teacher((cfg.replace(hidden_act='relu'), params)) != base


def test_teacher_fingerprint_of_a_folder(tmp_path):
  (tmp_path / 'sub').mkdir()
  (tmp_path / 'config.json').write_text('{"a": 1}')
  weights = np.arange(3 * (1 << 20) // 4 + 5, dtype=np.float32)   # > 3 chunks
  (tmp_path / 'sub' / 'model.bin').write_bytes(weights.tobytes())
  base = tc.fingerprint_teacher(str(tmp_path))
  assert base == tc.fingerprint_teacher(tmp_path)
  weights[-1] += 1      # in the last chunk
  (tmp_path / 'sub' / 'model.bin').write_bytes(weights.tobytes())
  assert tc.fingerprint_teacher(str(tmp_path)) != base
  single = tc.fingerprint_teacher(str(tmp_path / 'config.json'))
  assert single != base
  with pytest.raises(GlueError, match='does not exist'):
    tc.fingerprint_teacher(str(tmp_path / 'nope'))
