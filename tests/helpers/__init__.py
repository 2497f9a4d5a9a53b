"""Shared helpers for the tests: tiny configs, batches, tree comparisons, real
text and tokenizers, GLUE-shaped files, train runs read back.

Test modules import from here (or `helpers.parity`, the PyTorch reference),
never from one another."""

import os

import jax
import numpy as np

from configs import tiny
from jaxdistil.data import synthetic


def tiny_config(**overrides):
  """The tiny config without dropout (so runs compare exactly), then overrides
  given as dotted keys: tiny_config(**{'loss.alpha_ce': 0.0})."""
  c = tiny.get_config()
  c.model.student.hidden_dropout = 0.0
  c.model.student.attention_dropout = 0.0
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def batches(c, n, seed=0):
  rng = np.random.default_rng(seed)
  return [synthetic.random_batch(rng, c.batch_size, c.max_len,
                                 c.model.teacher.vocab_size) for _ in range(n)]


def to_numpy(tree):
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def max_relative_error(a, b) -> float:
  """max over leaves of ||a - b|| / ||b||."""
  errs = jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.linalg.norm(np.asarray(x, np.float64) - y) /
                         max(np.linalg.norm(np.asarray(y, np.float64)), 1e-30)),
      a, b))
  return max(errs)


def without_key_bias(params):
  """The params without attention key biases.

  softmax(q.k + q.b_k) = softmax(q.k): the key bias adds the same amount to all of
  a query's scores, so its gradient is exactly 0 in exact arithmetic. In floats
  it is round-off (~1e-9), whose sign depends on summation order, and Adam turns
  that into steps of size ~lr with that sign. Comparing two runs that sum in a
  different order (sharded vs not, accumulated vs not) on that leaf compares
  noise; every other leaf is compared.
  """
  out = jax.tree.map(lambda x: x, params)
  for layer in out['encoder'].values():
    del layer['attention']['self']['key']['bias']
  return out


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_VOCAB = os.path.join(ROOT, '..', 'shared', 'data', 'vocab')
# The quick-start teacher's 4,096-piece WordPiece vocabulary ships in the package.
SHIPPED_VOCAB = os.path.join(ROOT, 'jaxdistil', 'quickstart_data', 'teacher')


def vocab_dir() -> str:
  """bert-base-uncased's vocabulary from ../shared/data when it is there, else
  the shipped one: for tests that need a real WordPiece vocabulary, not that one."""
  if os.path.isfile(os.path.join(SHARED_VOCAB, 'vocab.txt')):
    return SHARED_VOCAB
  return SHIPPED_VOCAB


SHARED = os.path.join(ROOT, '..', 'shared', 'data')
SHARED_WIKI = os.path.join(SHARED, 'corpus', 'wikipedia', 'wiki_00')
SHARED_BOOK = os.path.join(SHARED, 'corpus', 'gutenberg', 'data_books_11-0.txt')
# Alice's Adventures in Wonderland again, as the package ships it.
SHIPPED_BOOK = os.path.join(ROOT, 'jaxdistil', 'quickstart_data', 'pg11.txt.gz')


def has_shared_corpus() -> bool:
  return os.path.isfile(SHARED_WIKI) and os.path.isfile(SHARED_BOOK)


def text_files() -> list:
  """Real text to train a tokenizer on or to prepare: a Wikipedia file and a
  Gutenberg book from ../shared/data, else the book the package ships."""
  return [SHARED_WIKI, SHARED_BOOK] if has_shared_corpus() else [SHIPPED_BOOK]


def read_text(path: str, limit: int | None = None) -> str:
  """A text file's (gzip or plain) first `limit` characters, as UTF-8."""
  import gzip
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rt', encoding='utf-8-sig', errors='replace') as f:
    return f.read(limit) if limit else f.read()


ROBERTA_SPECIALS = ('<s>', '<pad>', '</s>', '<unk>', '<mask>')   # ids 0, 1, 2, 3, 4


def bpe_tokenizer_dir(path, texts_or_files=None, vocab_size: int = 1000,
                      chars_per_file: int = 200_000) -> str:
  """A RoBERTa-style tokenizer directory at `path`: byte-level BPE trained here
  (`tokenizers`, well under a second on 2 cores) on the first `chars_per_file`
  characters of each of `texts_or_files` (paths or strings; default
  `text_files()`), with RoBERTa's special tokens at its ids (<s> 0, <pad> 1,
  </s> 2, <unk> 3, <mask> 4), saved with `save_pretrained` so that
  `AutoTokenizer` loads it as a RobertaTokenizer. No pretrained RoBERTa
  tokenizer can be downloaded on these machines; this one exercises the same
  code paths (byte-level pre-tokenisation, the special ids' positions)."""
  from tokenizers import ByteLevelBPETokenizer, Tokenizer
  from transformers import RobertaTokenizerFast
  texts = [read_text(t, chars_per_file) if os.path.isfile(t) else t[:chars_per_file]
           for t in (texts_or_files or text_files())]
  bpe = ByteLevelBPETokenizer()
  bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2,
                          special_tokens=list(ROBERTA_SPECIALS), show_progress=False)
  tok = RobertaTokenizerFast(
      tokenizer_object=Tokenizer.from_str(bpe.to_str()), bos_token='<s>', eos_token='</s>',
      cls_token='<s>', sep_token='</s>', pad_token='<pad>', unk_token='<unk>',
      mask_token='<mask>')
  path = str(path)
  tok.save_pretrained(path)
  return path


MBERT_VOCAB_SIZE = 119_547
MBERT_SPECIALS = {'[PAD]': 0, '[UNK]': 100, '[CLS]': 101, '[SEP]': 102,
                  '[MASK]': 103}


def mbert_vocab(source_vocab: str | None = None) -> list:
  """A cased WordPiece vocabulary shaped like bert-base-multilingual-cased's:
  119,547 distinct entries, [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK]
  103, [unusedN] elsewhere below 104. Then the pieces of `source_vocab` (the
  shared uncased vocab.txt, else the shipped one), filler pieces no text can
  produce (brackets are split off before WordPiece), and last the capitalised
  variants of the whole words: a capitalised word's id lies above 65,535, so
  cased text needs int32 tokens."""
  with open(source_vocab or os.path.join(vocab_dir(), 'vocab.txt'),
            encoding='utf-8') as f:
    pieces = [w for w in f.read().splitlines()
              if w and not (w.startswith('[') and w.endswith(']'))]
  head = [f'[unused{i}]' for i in range(104)]
  for token, i in MBERT_SPECIALS.items():
    head[i] = token
  seen = set(head)
  words, capitals = [], []
  for w in pieces:
    if w not in seen:
      seen.add(w)
      words.append(w)
  for w in words:
    c = w.capitalize()
    if w.isalpha() and c not in seen:   # 'ı' and 'i' both give 'I': once
      seen.add(c)
      capitals.append(c)
  fill = MBERT_VOCAB_SIZE - len(head) - len(words) - len(capitals)
  assert fill > 0, 'the source vocabulary is too large'
  return head + words + [f'[filler{i}]' for i in range(fill)] + capitals


def mbert_vocab_dir(path) -> str:
  """A multilingual-BERT-shaped tokenizer directory at `path` (see
  `mbert_vocab`): vocab.txt, plus a BertTokenizerFast `save_pretrained` with
  do_lower_case=False, so that it loads cased."""
  from transformers import BertTokenizerFast
  path = str(path)
  os.makedirs(path, exist_ok=True)
  vocab = os.path.join(path, 'vocab.txt')
  with open(vocab, 'w', encoding='utf-8') as f:
    f.write('\n'.join(mbert_vocab()) + '\n')
  BertTokenizerFast(vocab, do_lower_case=False).save_pretrained(path)
  return path


def read_shards(directory):
  """(metadata, [sequence ids as int64]) of a prepared directory, read straight
  from its TFRecord shards (not through the pipeline under test)."""
  import tensorflow as tf
  from jaxdistil.data import corpus as corpus_lib
  meta = corpus_lib.read_metadata(directory)
  seqs = []
  for shard in meta['shards']:
    for record in tf.data.TFRecordDataset(os.path.join(directory, shard['file'])):
      seqs.append(np.frombuffer(record.numpy(), meta['dtype']).astype(np.int64))
  return meta, seqs


def write_stsb(folder, n_train, n_dev, seed=0):
  """STS-B's layout (10 columns, header) with a learnable score: how many
  times 'sun' appears in sentence1 (0 to 5)."""
  rng = np.random.default_rng(seed)
  words = 'cat dog man woman car road tree house river city'.split()
  head = ('index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t'
          'sentence1\tsentence2\tscore')
  for split, n in (('train', n_train), ('dev', n_dev)):
    rows = [head]
    for i in range(n):
      k = int(rng.integers(0, 6))
      a = list(rng.choice(words, 5 - k)) + ['sun'] * k
      rng.shuffle(a)
      rows.append('\t'.join([str(i), 'main-captions', 'MSRvid', '2012test',
                             f'{i:04d}', 'none', 'none', ' '.join(a) + '.',
                             ' '.join(rng.choice(words, 4)) + '.', f'{k:.3f}']))
    path = os.path.join(folder, 'STS-B', f'{split}.tsv')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
      f.write('\n'.join(rows) + '\n')


def glue_subset(source: str, folder: str, task: str, n_train: int, n_dev: int):
  """The first rows of a real glue_data task (its header kept) in `folder`."""
  for split, n in (('train', n_train), ('dev', n_dev)):
    with open(os.path.join(source, task, f'{split}.tsv'), encoding='utf-8') as f:
      lines = f.read().split('\n')
    header = 0 if task == 'CoLA' else 1
    os.makedirs(os.path.join(folder, task), exist_ok=True)
    with open(os.path.join(folder, task, f'{split}.tsv'), 'w',
              encoding='utf-8') as f:
      f.write('\n'.join(lines[:header + n]) + '\n')


def mnli_lines(n, seed=0):
  """MNLI's dev layout: 16 columns, the texts in 9 and 10, gold_label last."""
  rng = np.random.default_rng(seed)
  head = ('index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\t'
          'sentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\t'
          'sentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label')
  names = ('contradiction', 'entailment', 'neutral')
  rows, labels = [head], []
  for i in range(n):
    y = names[rng.integers(3)]
    labels.append(names.index(y))
    rows.append('\t'.join([str(i), '1', f'{i}e', 'fiction', '( ( a b ) c )',
                           '( d e )', '(ROOT (S a))', '(ROOT (S d))',
                           f'premise {i} "q"', f'hypothesis {i}', y, y, 'neutral',
                           y, y, y]))
  return rows, labels


# `python -m jaxdistil.train` in a subprocess: one CPU device, no test flags.
ENV = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu')


def finished_steps(workdir):
  """The steps of a train workdir's checkpoints, in order ([] before any)."""
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(
      d) else []


def final_params(workdir):
  """(step, params) of a train workdir's last checkpoint, as NumPy."""
  import orbax.checkpoint as ocp
  step = finished_steps(workdir)[-1]
  mgr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  out = mgr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(), data=ocp.args.JsonRestore()))
  return step, jax.tree.map(np.asarray, out['state']['params'])
