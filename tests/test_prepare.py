"""`prepare`: real text to shards, idempotent reruns, exact resume, bad input."""

import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')

from jaxdistil.data import corpus as corpus_lib  # noqa: E402
from jaxdistil.data import tokenizer as tokenizer_lib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, '..', 'shared', 'data')
VOCAB = os.path.join(SHARED, 'vocab')
WIKI = os.path.join(SHARED, 'corpus', 'wikipedia', 'wiki_00')

needs_shared = pytest.mark.skipif(not os.path.exists(VOCAB),
                                  reason='../shared/data is not present')


from helpers import read_shards  # noqa: E402,F401


@needs_shared
def test_prepares_real_wikipedia_text(tmp_path):
  out = str(tmp_path / 'wiki')
  meta = corpus_lib.prepare(WIKI, VOCAB, 64, out, shard_size=500,
                             progress_bar=False)
  meta2, seqs = read_shards(out)
  assert meta == meta2
  assert meta['vocab_size'] == 30522 and meta['dtype'] == 'uint16'
  assert meta['num_sequences'] == len(seqs) > 1000
  assert len(meta['shards']) == -(-len(seqs) // 500)
  ids = meta['special_ids']
  assert (ids['cls'], ids['sep'], ids['pad'], ids['mask']) == (101, 102, 0, 103)
  for s in seqs:
    assert 12 <= len(s) <= 64 and s[0] == 101 and s[-1] == 102
    assert not np.isin(s[1:-1], [0, 101, 102, 103]).any()
  # The first sequence is the start of the first non-stub document, tokenised
  # independently with transformers.
  tok = tokenizer_lib.load(VOCAB)
  from jaxdistil.data import sources
  first_doc = next(iter(sources.read_documents(WIKI, 'wikiextractor')))
  expected = tok(first_doc, add_special_tokens=False)['input_ids'][:62]
  np.testing.assert_array_equal(seqs[0][1:-1], expected)
  # Token counts are exactly the shards' tokens.
  counts = np.load(os.path.join(out, 'token_counts.npy'))
  np.testing.assert_array_equal(counts, np.bincount(np.concatenate(seqs),
                                                    minlength=30522))
  assert not os.path.exists(os.path.join(out, 'progress.json'))


@needs_shared
def test_rerun_is_a_no_op_and_another_tokenizer_is_refused(tmp_path):
  out = str(tmp_path / 'wiki')
  corpus_lib.prepare(WIKI, VOCAB, 64, out, shard_size=2000, progress_bar=False)
  stamps = {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)}
  corpus_lib.prepare(WIKI, VOCAB, 64, out, shard_size=2000, progress_bar=False)
  assert stamps == {n: os.stat(os.path.join(out, n)).st_mtime_ns
                    for n in os.listdir(out)}
  with pytest.raises(corpus_lib.PrepareError, match='another max_len'):
    corpus_lib.prepare(WIKI, VOCAB, 128, out, progress_bar=False)
  other = tmp_path / 'other_vocab'
  other.mkdir()
  words = open(os.path.join(VOCAB, 'vocab.txt')).read().split('\n')
  (other / 'vocab.txt').write_text('\n'.join(words[:2000]))
  with pytest.raises(corpus_lib.PrepareError, match='another tokenizer_fingerprint'):
    corpus_lib.prepare(WIKI, str(other), 64, out, progress_bar=False)
  assert stamps == {n: os.stat(os.path.join(out, n)).st_mtime_ns
                    for n in os.listdir(out)}


@needs_shared
def test_interrupted_run_resumes_to_the_same_shards(tmp_path, monkeypatch):
  full = str(tmp_path / 'full')
  corpus_lib.prepare(WIKI, VOCAB, 64, full, shard_size=700, progress_bar=False)
  part = str(tmp_path / 'part')
  real_write = corpus_lib._write_shard
  calls = []

  def crash_on_third(path, seqs, dtype):
    calls.append(path)
    if len(calls) == 3:          # dies while writing: a .tmp is left behind
      open(path + '.tmp', 'wb').write(b'half')
      raise KeyboardInterrupt
    real_write(path, seqs, dtype)

  monkeypatch.setattr(corpus_lib, '_write_shard', crash_on_third)
  with pytest.raises(KeyboardInterrupt):
    corpus_lib.prepare(WIKI, VOCAB, 64, part, shard_size=700, progress_bar=False)
  assert corpus_lib.read_metadata(part) is None        # not marked complete
  assert os.path.exists(os.path.join(part, 'progress.json'))
  monkeypatch.setattr(corpus_lib, '_write_shard', real_write)
  corpus_lib.prepare(WIKI, VOCAB, 64, part, shard_size=700, progress_bar=False)
  meta_full, seqs_full = read_shards(full)
  meta_part, seqs_part = read_shards(part)
  assert meta_full['shards'] == meta_part['shards']
  assert meta_full['num_documents'] == meta_part['num_documents']
  assert len(seqs_full) == len(seqs_part)
  for a, b in zip(seqs_full, seqs_part):
    np.testing.assert_array_equal(a, b)
  assert not [n for n in os.listdir(part) if n.endswith('.tmp')]


def test_cut_drops_short_pieces_and_unk_heavy_ones():
  pieces = list(corpus_lib.cut(list(range(200, 230)), 12, 101, 102, 100))
  # 30 ids in bodies of 10: three pieces, all exactly 12 long.
  assert [len(p) for p in pieces] == [12, 12, 12]
  assert list(corpus_lib.cut(list(range(200, 209)), 64, 101, 102, 100)) == []
  unk = [100] * 10 + list(range(200, 210))
  assert list(corpus_lib.cut(unk, 64, 101, 102, 100)) == []   # half [UNK]


@needs_shared
@pytest.mark.parametrize('args,message', [
    (['--source=/nonexistent/*.txt'], "no files match '/nonexistent/"),
    (['--max_len=1024'], "max_len=1024 exceeds the model's 512 positions"),
    (['--tokenizer=/nonexistent_dir'], "is not a directory"),
    (['--tokenizer=bert-base-uncased'], 'cannot reach the Hugging Face hub'),
    (['--teacher_vocab_size=28996'], "has 30522 tokens but the teacher's "
                                     "vocabulary has 28996"),
])
@pytest.mark.slow
def test_bad_input_is_one_line(tmp_path, args, message):
  base = {'--source': WIKI, '--tokenizer': VOCAB, '--max_len': '64',
          '--output': str(tmp_path / 'out')}
  for a in args:
    k, v = a.split('=', 1)
    base[k] = v
  env = dict(os.environ, HF_HUB_OFFLINE='1')
  out = subprocess.run([sys.executable, '-m', 'jaxdistil.prepare'] +
                       [f'{k}={v}' for k, v in base.items()], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env=env)
  assert out.returncode == 2, out.stderr[-1000:]
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith('jaxdistil.prepare: ') and message in last, last


def test_a_corpus_without_sequences_is_refused(tmp_path):
  import helpers
  src = tmp_path / 'tiny.txt'
  src.write_text('Too short.\n\nAlso short.\n')
  with pytest.raises(corpus_lib.PrepareError, match='yielded no sequence'):
    corpus_lib.prepare(str(src), helpers.vocab_dir(), 64, str(tmp_path / 'out'), fmt='text',
                        progress_bar=False)


def test_unreadable_tokenizer_is_one_line(tmp_path):
  broken = tmp_path / 'tok'
  broken.mkdir()
  (broken / 'tokenizer.json').write_text('{not json')
  with pytest.raises(tokenizer_lib.TokenizerError,
                     match="cannot read the tokenizer in '.*tok'"):
    tokenizer_lib.load(str(broken))
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(tokenizer_lib.TokenizerError,
                     match='holds neither tokenizer.json nor vocab.txt'):
    tokenizer_lib.load(str(empty))
