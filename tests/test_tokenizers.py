"""Other tokenizers than bert-base-uncased's: RoBERTa-style byte-level BPE and a
multilingual-BERT-sized cased WordPiece, through prepare, the pipeline and the
check that refuses data prepared with another tokenizer than the teacher's.

The tokenizers are built in the session (`conftest.py`): a byte-level BPE
trained on real text with RoBERTa's special ids, and a 119,547-entry cased
vocabulary whose capitalised words lie above id 65,535.
"""

import json
import os
import shutil

import numpy as np
import pytest

tf = pytest.importorskip('tensorflow')

import helpers  # noqa: E402
from jaxdistil.data import corpus as corpus_lib  # noqa: E402
from jaxdistil.data import pipeline  # noqa: E402
from jaxdistil.data import sources  # noqa: E402
from jaxdistil.data import tokenizer as tokenizer_lib  # noqa: E402

ROBERTA_IDS = {'pad': 1, 'unk': 3, 'cls': 0, 'sep': 2, 'mask': 4}
BOS, PAD, EOS, UNK, MASK = 0, 1, 2, 3, 4
MAX_LEN = 64

needs_shared = pytest.mark.skipif(not helpers.has_shared_corpus(),
                                  reason='../shared/data is not present')


read_shards = helpers.read_shards


def take(p, n):
  return [next(p) for _ in range(n)]


@pytest.fixture(scope='module')
def bpe_prepared(bpe_tokenizer, tmp_path_factory):
  """wiki_00 and a Gutenberg book, prepared with the BPE tokenizer."""
  if not helpers.has_shared_corpus():
    pytest.skip('../shared/data is not present')
  out = str(tmp_path_factory.mktemp('bpe') / 'prepared')
  corpus_lib.prepare(helpers.text_files(), bpe_tokenizer, MAX_LEN, out,
                     shard_size=2000, progress_bar=False)
  return out


@pytest.fixture(scope='module')
def mbert_prepared(mbert_tokenizer, tmp_path_factory):
  """A Gutenberg book (the shared one, else the shipped copy), prepared with
  the multilingual-BERT-shaped tokenizer."""
  book = helpers.SHARED_BOOK if os.path.isfile(helpers.SHARED_BOOK) else (
      helpers.SHIPPED_BOOK)
  out = str(tmp_path_factory.mktemp('mbert') / 'prepared')
  corpus_lib.prepare(book, mbert_tokenizer, MAX_LEN, out, fmt='gutenberg',
                     shard_size=400, progress_bar=False)
  return out


# -- the tokenizers ----------------------------------------------------------


def test_bpe_tokenizer_has_robertas_special_ids(bpe_tokenizer):
  tok = tokenizer_lib.load(bpe_tokenizer)
  assert tokenizer_lib.special_ids(tok) == ROBERTA_IDS
  assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == list(helpers.ROBERTA_SPECIALS)
  assert len(tok) == 1000
  # Byte-level: any text encodes without <unk>, and decodes back exactly.
  text = 'Ünïcode — “quotes” and 数字 survive.'
  ids = tok(text, add_special_tokens=False)['input_ids']
  assert UNK not in ids and tok.decode(ids) == text


def test_bos_and_eos_stand_for_cls_and_sep(bpe_tokenizer, tmp_path):
  """A tokenizer that names only bos/eos (no cls/sep) loads, with those as the
  sequence start and end; one without a mask token is refused in one line
  that names what is needed."""
  from transformers import AutoTokenizer, PreTrainedTokenizerFast
  backend = AutoTokenizer.from_pretrained(bpe_tokenizer).backend_tokenizer
  specials = dict(bos_token='<s>', eos_token='</s>', pad_token='<pad>',
                  unk_token='<unk>')
  PreTrainedTokenizerFast(tokenizer_object=backend, mask_token='<mask>',
                          **specials).save_pretrained(tmp_path / 'bos_eos')
  tok = tokenizer_lib.load(str(tmp_path / 'bos_eos'))
  assert tok.cls_token_id is None
  assert tokenizer_lib.special_ids(tok) == ROBERTA_IDS
  PreTrainedTokenizerFast(tokenizer_object=backend, **specials).save_pretrained(
      tmp_path / 'no_mask')
  with pytest.raises(tokenizer_lib.TokenizerError) as e:
    tokenizer_lib.load(str(tmp_path / 'no_mask'))
  assert str(e.value).endswith(
      'has no mask token: a tokenizer with pad, unk, cls (or bos), sep (or eos) '
      'and mask tokens is needed')
  assert 'BERT' not in str(e.value)


def test_mbert_shaped_vocabulary_loads_cased(mbert_tokenizer, tmp_path):
  words = open(os.path.join(mbert_tokenizer, 'vocab.txt'),
               encoding='utf-8').read().splitlines()
  assert len(words) == len(set(words)) == 119_547
  tok = tokenizer_lib.load(mbert_tokenizer)
  assert len(tok) == 119_547
  assert tokenizer_lib.special_ids(tok) == {'pad': 0, 'unk': 100, 'cls': 101,
                                            'sep': 102, 'mask': 103}
  ids = tok('Alice met the Queen', add_special_tokens=False)['input_ids']
  assert tok.convert_ids_to_tokens(ids) == ['Alice', 'met', 'the', 'Queen']
  assert ids[0] == words.index('Alice') > 65535
  # Its vocab.txt alone says it is cased (uppercase pieces); an uncased
  # vocab.txt (no uppercase piece) still loads lowercasing.
  bare = tmp_path / 'bare'
  bare.mkdir()
  shutil.copy(os.path.join(mbert_tokenizer, 'vocab.txt'), bare)
  tok = tokenizer_lib.load(str(bare))
  assert tok.tokenize('Alice met the Queen') == ['Alice', 'met', 'the', 'Queen']
  assert tokenizer_lib.fingerprint(tok) == tokenizer_lib.fingerprint(
      tokenizer_lib.load(mbert_tokenizer))
  assert tokenizer_lib.load(helpers.vocab_dir()).tokenize('The') == ['the']


# -- prepare ---------------------------------------------------------------------


@needs_shared
def test_prepare_real_text_with_byte_level_bpe(bpe_prepared, bpe_tokenizer):
  meta, seqs = read_shards(bpe_prepared)
  tok = tokenizer_lib.load(bpe_tokenizer)
  assert meta['special_ids'] == ROBERTA_IDS
  assert meta['vocab_size'] == len(tok) == 1000 and meta['dtype'] == 'uint16'
  assert meta['vocab_hash'] == tokenizer_lib.vocab_hash(tok)
  assert meta['tokenizer_fingerprint'] == tokenizer_lib.fingerprint(tok)
  assert meta['num_sequences'] == len(seqs) > 1000
  for s in seqs:
    assert 12 <= len(s) <= MAX_LEN and s[0] == BOS and s[-1] == EOS
    assert not np.isin(s[1:-1], list(ROBERTA_IDS.values())).any()   # no <pad>
  # As for BERT, a document's tail (or a document) of fewer than 10 tokens is
  # dropped: the count follows from each document's length alone.
  docs = list(sources.read_documents(helpers.text_files(), 'auto'))
  lengths = [len(x) for x in tok(docs, add_special_tokens=False)['input_ids']]
  body = MAX_LEN - 2
  assert sum(n < 10 for n in lengths) >= 5             # short documents
  assert sum(0 < n % body < 10 for n in lengths) > 50  # and short tails
  assert len(seqs) == sum(n // body + (n % body >= 10) for n in lengths)
  # A sequence decodes to text of the source files (whitespace aside).
  source = ' '.join(' '.join(helpers.read_text(f).split())
                    for f in helpers.text_files())
  assert tok.decode(seqs[0]).startswith('<s>')
  for s in seqs[::len(seqs) // 200]:
    text = tok.decode(s[1:-1], clean_up_tokenization_spaces=False)
    text = ' '.join(text.strip('\ufffd').split())   # a cut may split a character
    assert len(text) > 20 and text in source, text


def test_text_spelling_a_special_token_stays_text(bpe_tokenizer, tmp_path):
  """A literal '</s>' or '<pad>' in the corpus never becomes that special id."""
  src = tmp_path / 'doc.txt'
  src.write_text('Some <s>struck</s> words, then a <pad> and a <mask> and an '
                 '<unk> in running text that is long enough to keep.\n')
  out = str(tmp_path / 'out')
  corpus_lib.prepare(str(src), bpe_tokenizer, MAX_LEN, out, fmt='text',
                     progress_bar=False)
  _, [seq] = read_shards(out)
  assert seq[0] == BOS and seq[-1] == EOS
  assert not np.isin(seq[1:-1], list(ROBERTA_IDS.values())).any()


def test_prepare_mbert_sized_vocabulary_is_int32_and_cased(mbert_prepared,
                                                           mbert_tokenizer):
  meta, seqs = read_shards(mbert_prepared)
  words = open(os.path.join(mbert_tokenizer, 'vocab.txt'),
               encoding='utf-8').read().splitlines()
  assert meta['vocab_size'] == 119_547 and meta['dtype'] == 'int32'
  assert meta['special_ids'] == {'pad': 0, 'unk': 100, 'cls': 101, 'sep': 102,
                                 'mask': 103}
  assert all(s[0] == 101 and s[-1] == 102 for s in seqs)
  every = np.concatenate(seqs)
  assert every.max() > 65535 and every.max() < 119_547     # uint16 would wrap
  counts = np.load(os.path.join(mbert_prepared, 'token_counts.npy'))
  np.testing.assert_array_equal(counts, np.bincount(every, minlength=119_547))
  # Cased: "Alice" is its own capitalised piece, far more often than "alice".
  alice, lower = words.index('Alice'), words.index('alice')
  assert counts[alice] > 100 > counts[lower]
  # The first sequence is the book's first paragraph long enough to keep, as
  # a cased tokenizer reads it straight from vocab.txt.
  from transformers import BertTokenizerFast
  cased = BertTokenizerFast(os.path.join(mbert_tokenizer, 'vocab.txt'),
                            do_lower_case=False)
  paragraphs = sources.read_documents(meta['source'], 'gutenberg')
  first = next(ids for ids in (cased(p, add_special_tokens=False)['input_ids']
                               for p in paragraphs) if len(ids) >= 10)
  np.testing.assert_array_equal(seqs[0][1:-1], first[:MAX_LEN - 2])
  assert len(set(first) & {alice, words.index('The')}) > 0


# -- the pipeline ----------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize('packing', [True, False])
def test_pipeline_over_bpe_data(bpe_prepared, packing):
  p = pipeline.Pipeline(pipeline.InputConfig(bpe_prepared, batch_size=32, seed=7,
                                             packing=packing))
  batches = take(p, 60)
  labels = np.concatenate([b['labels'] for b in batches])
  inputs = np.concatenate([b['input_ids'] for b in batches])
  chosen = np.concatenate([b['mlm_mask'] for b in batches]) == 1
  attention = np.concatenate([b['attention_mask'] for b in batches])
  # Rows are padded with <pad> (1), and only padding is 1.
  np.testing.assert_array_equal(attention, labels != PAD)
  assert (labels[:, -1] == PAD).any() and (labels[:, 0] == BOS).all()
  # Masking never picks <s>, </s> or <pad>; 80% of the picks become <mask> (4).
  assert not chosen[np.isin(labels, [BOS, EOS, PAD, UNK, MASK])].any()
  assert abs(chosen.sum() / np.isin(labels, [BOS, EOS, PAD], invert=True).sum()
             - 0.15) < 0.01
  replaced = inputs[chosen]
  assert abs(np.mean(replaced == MASK) - 0.8) < 0.02
  np.testing.assert_array_equal(inputs[~chosen], labels[~chosen])
  # Random replacements (~2,000 here) are drawn from the whole vocabulary, as
  # the reference draws them (specials included: the model's positions follow
  # the attention mask, so a random <pad> moves no position).
  randoms = replaced[(replaced != MASK) & (replaced != labels[chosen])]
  assert len(randoms) > 1000
  assert randoms.min() >= 0 and randoms.max() < 1000
  assert len(np.unique(randoms)) > 400
  if not packing:
    for row in labels:
      n = int((row != PAD).sum())
      assert row[n - 1] == EOS and not np.isin(row[1:n - 1], [BOS, EOS]).any()
    return
  segments = np.concatenate([b['segment_ids'] for b in batches])
  positions = np.concatenate([b['position_ids'] for b in batches])
  assert segments.max() >= 3                      # rows hold several sequences
  for ids, seg, pos in zip(labels, segments, positions):
    n = int((seg > 0).sum())
    assert (seg[n:] == 0).all() and (ids[n:] == PAD).all() and (pos[n:] == 0).all()
    assert (np.diff(seg[:n]) >= 0).all()
    for k in range(1, int(seg.max()) + 1):
      piece = ids[seg == k]
      assert piece[0] == BOS and piece[-1] == EOS
      assert not np.isin(piece[1:-1], [BOS, EOS, PAD]).any()
      np.testing.assert_array_equal(pos[seg == k], np.arange(len(piece)))


def test_pipeline_over_mbert_sized_data(mbert_prepared):
  p = pipeline.Pipeline(pipeline.InputConfig(mbert_prepared, batch_size=16,
                                             seed=1, max_len=128))
  batches = take(p, 8)
  labels = np.concatenate([b['labels'] for b in batches])
  inputs = np.concatenate([b['input_ids'] for b in batches])
  chosen = np.concatenate([b['mlm_mask'] for b in batches]) == 1
  assert labels.dtype == np.int32
  assert 65535 < labels.max() < 119_547 and 65535 < inputs.max() < 119_547
  np.testing.assert_array_equal(
      np.concatenate([b['attention_mask'] for b in batches]), labels != 0)
  assert not chosen[np.isin(labels, [0, 100, 101, 102, 103])].any()
  assert (inputs[chosen] == 103).mean() > 0.6


# -- data from another tokenizer than the teacher's ---------------------------------


def test_bpe_data_with_a_bert_teachers_tokenizer_is_refused(bpe_tokenizer, tmp_path):
  """Named in one line: the directory, the special ids that differ, and the
  prepare command with the teacher's tokenizer."""
  src = tmp_path / 'book.txt'
  src.write_text(helpers.read_text(helpers.text_files()[-1], 60_000))
  data = str(tmp_path / 'data')
  corpus_lib.prepare(str(src), bpe_tokenizer, 32, data, progress_bar=False)
  p = pipeline.Pipeline(pipeline.InputConfig(data, batch_size=4))
  p.check_tokenizer(bpe_tokenizer)                 # its own tokenizer: fine
  p.check_tokenizer(None)                          # no teacher tokenizer: no check
  bert = helpers.vocab_dir()
  ids = tokenizer_lib.special_ids(tokenizer_lib.load(bert))
  with pytest.raises(pipeline.InputError) as e:
    p.check_tokenizer(bert)
  msg = str(e.value)
  assert '\n' not in msg
  assert msg.startswith(f"'{data}' was prepared with another tokenizer than the "
                        f"teacher's ({bert}): special ids differ (data vs teacher: "
                        f"pad 1 vs {ids['pad']}, ")
  assert f"cls 0 vs {ids['cls']}" in msg
  assert msg.endswith(f'prepare it again with python -m jaxdistil.prepare '
                      f'--source={src} --tokenizer={bert} --max_len=32 '
                      f'--output=DIR and train with --config.data=DIR')


@pytest.fixture
def mbert_copies(mbert_prepared, mbert_tokenizer, tmp_path):
  """The mBERT-shaped vocabulary as a bare vocab.txt folder, and the same with
  two ordinary pieces swapped (same size, same special ids)."""
  words = open(os.path.join(mbert_tokenizer, 'vocab.txt'),
               encoding='utf-8').read().splitlines()
  bare, swapped = tmp_path / 'bare', tmp_path / 'swapped'
  bare.mkdir()
  swapped.mkdir()
  (bare / 'vocab.txt').write_text('\n'.join(words) + '\n', encoding='utf-8')
  i, j = words.index('Alice'), words.index('Queen')
  words[i], words[j] = words[j], words[i]
  (swapped / 'vocab.txt').write_text('\n'.join(words) + '\n', encoding='utf-8')
  return str(bare), str(swapped)


def test_same_vocabulary_agrees_and_another_is_refused(mbert_prepared,
                                                       mbert_tokenizer,
                                                       mbert_copies):
  bare, swapped = mbert_copies
  p = pipeline.Pipeline(pipeline.InputConfig(mbert_prepared, batch_size=4))
  p.check_tokenizer(mbert_tokenizer)
  # The bare vocab.txt agrees: it holds the same vocabulary. Even read
  # lowercasing (another fingerprint), its vocabulary is the data's.
  p.check_tokenizer(bare)
  lowered = tokenizer_lib.load(bare, lowercase=True)
  assert tokenizer_lib.fingerprint(lowered) != p.meta['tokenizer_fingerprint']
  assert tokenizer_lib.differences(p.meta, lowered) == []
  with pytest.raises(pipeline.InputError,
                     match=r"another tokenizer than the teacher's \(.*swapped\): "
                           r'the vocabularies differ \(119547 vs 119547 tokens, '
                           r'same special ids\): prepare it again with python -m '
                           r'jaxdistil.prepare --source=.* --tokenizer=.*swapped'):
    p.check_tokenizer(swapped)


def test_metadata_without_a_vocab_hash_checks_the_special_ids_only(
    mbert_prepared, mbert_copies, bpe_tokenizer, tmp_path):
  _, swapped = mbert_copies
  old = tmp_path / 'old'
  shutil.copytree(mbert_prepared, old)
  meta = json.loads((old / 'metadata.json').read_text())
  del meta['vocab_hash']                   # as prepared before it was recorded
  (old / 'metadata.json').write_text(json.dumps(meta))
  p = pipeline.Pipeline(pipeline.InputConfig(str(old), batch_size=4))
  p.check_tokenizer(swapped)
  with pytest.raises(pipeline.InputError,
                     match=r'special ids differ \(data vs teacher: pad 0 vs 1, '
                           r'unk 100 vs 3, cls 101 vs 0, sep 102 vs 2, '
                           r'mask 103 vs 4\)'):
    p.check_tokenizer(bpe_tokenizer)


# -- at train start ----------------------------------------------------------------


def test_train_refuses_bpe_data_with_a_bert_teacher_before_writing(bpe_tokenizer,
                                                                   tmp_path):
  """A RoBERTa-style data directory and a BERT-style Hugging Face teacher: train
  stops in one line (a ValueError: `python -m jaxdistil.train` prints it and
  exits with status 2) before it creates the workdir or any checkpoint."""
  pytest.importorskip('torch')
  from helpers.parity import save_teacher
  from jaxdistil import train
  teacher = str(tmp_path / 'teacher')
  save_teacher(teacher)
  src = tmp_path / 'book.txt'
  src.write_text(helpers.read_text(helpers.text_files()[-1], 20_000))
  data = str(tmp_path / 'data')
  corpus_lib.prepare(str(src), bpe_tokenizer, 16, data, shard_size=100,
                     progress_bar=False)
  config = helpers.tiny_config(**{'data': data, 'total_steps': 2, 'eval_every': 0})
  config.teacher = teacher
  work = str(tmp_path / 'work')
  with pytest.raises(pipeline.InputError) as e:
    train.train(config, work)
  assert isinstance(e.value, ValueError) and '\n' not in str(e.value)
  assert str(e.value).startswith(
      f"'{data}' was prepared with another tokenizer than the teacher's "
      f"({teacher}): special ids differ (data vs teacher: pad 1 vs 0, unk 3 vs 1, "
      f"cls 0 vs 2, sep 2 vs 3)")
  assert f'python -m jaxdistil.prepare --source={src} --tokenizer={teacher} ' in (
      str(e.value))
  assert not os.path.exists(work)
