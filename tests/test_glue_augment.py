"""Augmentation with a tiny random BERT MLM and a tiny WordPiece vocabulary:
deterministic, resumable to byte-identical shards, replacements among the
MLM's top-k for the masked word given `[CLS] masked [SEP] original [SEP]`
(checked against the model's logits computed directly), TinyBERT's rules
(stop words and digits kept, duplicates dropped, a pair's columns one at a
time, N by task), the transfer set's task and source rows checked, an empty
input is one line."""

import os

import jax
import numpy as np
import pytest

from jaxdistil.data import tokenizer as tokenizer_lib
from jaxdistil.glue import augment
from jaxdistil.glue.data import Examples
from jaxdistil.glue.tasks import GlueError
from jaxdistil.models import bert

SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '[unused0]']
WORDS = ('the a cat dog sat ran on mat far away it rained all day so we stayed '
         'in out big small red blue green house tree car road old new good bad '
         'very quite one two three play walk run jump sing read , . ! ?').split()
PIECES = ['##ing', '##s', '##ed', '##er']


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
  folder = tmp_path_factory.mktemp('vocab')
  (folder / 'vocab.txt').write_text('\n'.join(SPECIALS + WORDS + PIECES) + '\n')
  return tokenizer_lib.load(str(folder))


@pytest.fixture(scope='module')
def mlm(tok):
  cfg = bert.BertConfig(vocab_size=len(tok.get_vocab()), hidden_size=32,
                        num_layers=2, num_heads=2, intermediate_size=64,
                        max_position_embeddings=32, initializer_range=0.5)
  return cfg, jax.device_get(bert.init(cfg, jax.random.key(0)))


def pairs(n=5):
  a = ['The cat sat on the mat .', 'a dog ran far away !', 'it rained all day',
       'we stayed in the big old house', 'playing  one red car ?',
       'so very small', 'two blue trees']
  b = ['the tree is green', 'read , sing , jump', 'walked out', 'good day',
       'a new road', 'bad cats', 'three']
  return Examples(a[:n], b[:n], np.arange(n, dtype=np.int32), 'test')


def files(folder):
  return {name: open(os.path.join(folder, name), 'rb').read()
          for name in sorted(os.listdir(folder))}


CFG = augment.AugmentConfig(copies=4, p=0.5, top_k=5, seed=3, max_len=16,
                            batch_size=8, shard_size=2)


def test_deterministic_given_the_seed(tok, mlm, tmp_path):
  for name in ('one', 'two'):
    augment.augment(pairs(), *mlm, tok, str(tmp_path / name), CFG)
  assert files(tmp_path / 'one') == files(tmp_path / 'two')
  assert sorted(files(tmp_path / 'one')) == [
      'augment.json', 'progress.json', 'shard-00000-of-00003.tsv',
      'shard-00001-of-00003.tsv', 'shard-00002-of-00003.tsv']
  other = augment.AugmentConfig(**{**CFG.__dict__, 'seed': 4})
  augment.augment(pairs(), *mlm, tok, str(tmp_path / 'three'), other)
  shards = lambda d: {k: v for k, v in files(d).items() if k.startswith('shard')}
  assert shards(tmp_path / 'one') != shards(tmp_path / 'three')
  transfer = augment.read_transfer_set(str(tmp_path / 'one'))
  settings = augment.augment(pairs(), *mlm, tok, str(tmp_path / 'one'), CFG)
  assert len(transfer.examples) == settings['rows'] <= 5 * 2 * CFG.copies
  assert transfer.source.tolist() == sorted(transfer.source.tolist())
  assert set(transfer.source.tolist()) <= set(range(5))
  assert not transfer.label_weights.any() and not transfer.examples.labels.any()
  assert transfer.examples.labels.dtype == np.int32
  # the copies differ from the input somewhere (p = 0.5 on these words)
  assert any(x != pairs().text_a[i] for x, i in
             zip(transfer.examples.text_a, transfer.source))


def test_resume_after_an_interruption_is_byte_identical(tok, mlm, tmp_path):
  whole = str(tmp_path / 'whole')
  augment.augment(pairs(), *mlm, tok, whole, CFG)
  cut = str(tmp_path / 'cut')

  def stop(s):
    raise KeyboardInterrupt(f'killed after shard {s}')
  with pytest.raises(KeyboardInterrupt):
    augment.augment(pairs(), *mlm, tok, cut, CFG, on_shard=stop)
  assert sorted(os.listdir(cut)) == ['augment.json', 'progress.json',
                                     'shard-00000-of-00003.tsv']
  with pytest.raises(GlueError, match='incomplete .1 of 3 shards'):
    augment.read_transfer_set(cut)
  # a kill after a shard was written but before it was marked done, and one
  # in the middle of writing the next: both are redone
  with open(os.path.join(cut, 'shard-00001-of-00003.tsv'), 'w') as f:
    f.write('0\tstale\tshard\n')
  with open(os.path.join(cut, 'shard-00002-of-00003.tsv.tmp'), 'w') as f:
    f.write('0\thalf')
  seen = []
  augment.augment(pairs(), *mlm, tok, cut, CFG, on_shard=seen.append)
  assert seen == [1, 2]
  assert files(cut) == files(whole)
  # finished: calling again does nothing
  augment.augment(pairs(), *mlm, tok, cut, CFG, on_shard=seen.append)
  assert seen == [1, 2]


def test_other_settings_on_the_same_folder_are_refused(tok, mlm, tmp_path):
  out = str(tmp_path / 'out')
  augment.augment(pairs(3), *mlm, tok, out, CFG)
  before = files(out)
  with pytest.raises(GlueError) as e:
    augment.augment(pairs(3), *mlm, tok, out,
                    augment.AugmentConfig(**{**CFG.__dict__, 'p': 0.3}))
  assert '\n' not in str(e.value) and '(p differ)' in str(e.value)
  with pytest.raises(GlueError, match='data, source differ'):
    augment.augment(pairs(4).take(np.array([1, 0, 2])), *mlm, tok, out, CFG)
  assert files(out) == before
  (tmp_path / 'other').mkdir()
  (tmp_path / 'other' / 'x').write_text('x')
  with pytest.raises(GlueError, match='not empty'):
    augment.augment(pairs(3), *mlm, tok, str(tmp_path / 'other'), CFG)


def allowed_ids(tok, vocab_size):
  special = set(SPECIALS)
  ok = np.zeros(vocab_size, bool)
  for t, i in tok.get_vocab().items():
    ok[i] = t not in special and not t.startswith('##') and t.isalnum()
  return ok


def test_replacements_are_in_the_mlms_top_k(tok, mlm, tmp_path):
  cfg, params = mlm
  k = 5
  texts = ['the cat sat on the mat .', 'we stayed in the big old house',
           'playing one red car ?', 'a dog ran far away !']
  ex = Examples(texts, None, np.zeros(4, np.int32), 'test')
  settings = augment.AugmentConfig(copies=3, p=1.0, top_k=k, seed=0,
                                   max_len=32, batch_size=8, shard_size=3)
  augment.augment(ex, cfg, params, tok, str(tmp_path / 'out'), settings)
  transfer = augment.read_transfer_set(str(tmp_path / 'out'))
  vocab = tok.get_vocab()
  ok = allowed_ids(tok, cfg.vocab_size)
  ids = lambda ws: [vocab[w] for w in ws]
  # one row at a time, padded to 32 (padding is masked out: one compile)
  apply = jax.jit(lambda ids, mask, types: bert.apply(cfg, params, ids, mask,
                                                      types).logits[0])
  direct = {}     # (example, word) -> the MLM's logits at the masked word
  replaced = 0
  for text, i in zip(transfer.examples.text_a, transfer.source):
    src, new = texts[i].split(), text.split()
    assert len(src) == len(new)
    for pos, (old, got) in enumerate(zip(src, new)):
      # playing: 2 pieces; '.', '?': punctuation; the, we, in, a, on: stop
      # words; 'one' is a word, so it may change.
      if (old not in vocab or not old.isalpha()
          or old in ('the', 'we', 'in', 'a', 'on')):
        assert got == old
        continue
      flat = [t for w in src for t in tok(w, add_special_tokens=False)['input_ids']]
      # position of word pos among the pieces ('playing' is two)
      at = 1 + sum(len(tok(w, add_special_tokens=False)['input_ids'])
                   for w in src[:pos])
      row = [vocab['[CLS]']] + flat + [vocab['[SEP]']] + flat + [vocab['[SEP]']]
      types = [0] * (len(flat) + 2) + [1] * (len(flat) + 1)
      row[at] = vocab['[MASK]']
      if (i, pos) not in direct:
        ids, mask, tt = (np.zeros((1, 32), np.int32) for _ in range(3))
        ids[0, :len(row)], mask[0, :len(row)], tt[0, :len(row)] = row, 1, types
        direct[i, pos] = np.asarray(apply(ids, mask, tt), np.float64)[at]
      logits = np.where(ok, direct[i, pos], -np.inf)
      kth = np.sort(logits)[-k]
      assert ok[vocab[got]], got
      assert logits[vocab[got]] >= kth - 1e-4, (old, got)   # tolerance: ties
      replaced += got != old
  assert replaced > 10


def test_p_zero_gives_no_new_rows(tok, mlm, tmp_path):
  """Every draw at p = 0 is the original, which is never repeated."""
  ex = pairs(7)
  settings = augment.AugmentConfig(copies=2, p=0.0, top_k=5, max_len=16,
                                   batch_size=8, shard_size=4)
  got = augment.augment(ex, *mlm, tok, str(tmp_path / 'out'), settings)
  assert got['rows'] == 0
  assert len(augment.read_transfer_set(str(tmp_path / 'out')).examples) == 0


def test_tinyberts_rules(tok, mlm, tmp_path):
  """Stop words and digits are kept; a draw equal to the original or to an
  earlier draw is dropped; a pair changes one column at a time; N by task."""
  ex = Examples(['the cat sat on the mat', 'it was 42 and so on', 'a dog'],
                ['we read', 'one house', 'the old tree'],
                np.zeros(3, np.int32), 'test')
  cfg = augment.AugmentConfig(copies=30, p=0.5, top_k=3, seed=1, max_len=32,
                              batch_size=8, shard_size=2)
  augment.augment(ex, *mlm, tok, str(tmp_path / 'out'), cfg)
  transfer = augment.read_transfer_set(str(tmp_path / 'out'))
  rows = list(zip(transfer.source.tolist(), transfer.examples.text_a,
                  transfer.examples.text_b))
  assert len(set(rows)) == len(rows)                      # no duplicate
  for i, a, b in rows:
    changed = [a != ex.text_a[i], b != ex.text_b[i]]
    assert sum(changed) == 1, (a, b)                      # one column a copy
  # 'it was 42 and so on': stop words and a number, nothing to replace.
  assert 1 not in [i for i, a, _ in rows if a != ex.text_a[i]]
  # 'a dog': one eligible word among k = 3 candidates: at most 3 copies of
  # that column (30 draws, deduplicated), never the original.
  dog = [a for i, a, b in rows if i == 2 and a != ex.text_a[2]]
  assert 1 <= len(dog) <= 3 and all(a.startswith('a ') for a in dog)
  for i, a, b in rows:
    for old, new in ((ex.text_a[i], a), (ex.text_b[i], b)):
      for w_old, w_new in zip(old.split(), new.split()):
        if w_old in augment.STOP_WORDS or not w_old.isalpha():
          assert w_new == w_old
  assert [augment.copies_for(t) for t in ('MNLI', 'QQP', 'SST-2', 'QNLI',
                                          'MRPC', 'CoLA')] == [10, 10, 20, 20, 30, 30]


def test_a_transfer_set_is_checked_against_the_task_and_rows(tok, mlm, tmp_path):
  out = str(tmp_path / 'out')
  augment.augment(pairs(4), *mlm, tok, out, CFG, task='MRPC')
  transfer = augment.read_transfer_set(out)
  meta = transfer.meta
  assert meta['task'] == 'MRPC' and meta['source'] == augment.source_fingerprint(pairs(4))
  augment.check_matches(transfer, 'MRPC', pairs(4), 'ts')          # fine
  for task, rows, want in (('RTE', pairs(4), 'a transfer set for MRPC, not RTE'),
                           ('MRPC', pairs(5), 'other MRPC training rows than these 5')):
    with pytest.raises(GlueError) as e:
      augment.check_matches(transfer, task, rows, 'ts')
    assert want in str(e.value) and '\n' not in str(e.value)
  # One made without a task (or before tasks were recorded) is refused.
  augment.augment(pairs(4), *mlm, tok, str(tmp_path / 'anon'), CFG)
  with pytest.raises(GlueError, match='does not record the task'):
    augment.check_matches(augment.read_transfer_set(str(tmp_path / 'anon')),
                          'MRPC', pairs(4), 'ts')
  import json
  old = json.loads(open(os.path.join(out, 'augment.json')).read())
  old['format'] = 1
  with open(os.path.join(out, 'augment.json'), 'w') as f:
    json.dump(old, f)
  with pytest.raises(GlueError, match='format 1, made before'):
    augment.read_transfer_set(out)


def test_empty_input_and_bad_settings_are_one_line(tok, mlm, tmp_path):
  empty = Examples([], None, np.zeros(0, np.int32), 'test')
  for ex, cfg in ((empty, CFG),
                  (pairs(), augment.AugmentConfig(**{**CFG.__dict__, 'copies': 0}))):
    with pytest.raises(GlueError) as e:
      augment.augment(ex, *mlm, tok, str(tmp_path / 'out'), cfg)
    assert str(e.value).startswith('empty transfer set') and '\n' not in str(e.value)
  assert not (tmp_path / 'out').exists()
  with pytest.raises(GlueError, match=r'p=1.5: must be in \[0, 1\]'):
    augment.augment(pairs(), *mlm, tok, str(tmp_path / 'out'),
                    augment.AugmentConfig(p=1.5))
  with pytest.raises(GlueError, match='not an augmentation folder'):
    augment.read_transfer_set(str(tmp_path))


def test_word_spans_split_like_bert():
  text = "Don't  stop, (ok)!"
  assert [text[a:b] for a, b in augment.word_spans(text)] == [
      'Don', "'", 't', 'stop', ',', '(', 'ok', ')', '!']
  assert augment.word_spans('   ') == []
