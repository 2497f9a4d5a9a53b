"""Tokenise a corpus once into TFRecord shards that training reads.

    python -m jaxdistil.prepare --source='corpus/wikipedia/wiki_*' \
        --tokenizer=../shared/data/vocab --max_len=128 --output=/data/wiki128

Documents (see `sources`) are tokenised in batches by the teacher's Hugging Face
tokenizer (its Rust backend uses every core) and cut into sequences of at most
`max_len` tokens, `[CLS] w1 ... wn [SEP]` (`<s> w1 ... wn </s>` with a RoBERTa
tokenizer: the ids are the tokenizer's own), in order. As in the reference, a
piece of 11 tokens or fewer (a document's short tail, or a short document) is
dropped, and so is a piece that is at least half [UNK]. Text that spells a
special token (a literal `</s>` or `[MASK]` in the corpus) is tokenised as the
text it is, never as that special id.

Output directory:
  shard-00000.tfrecord ...  one record per sequence: its ids as little-endian
                            uint16 (int32 when the vocabulary needs it)
  token_counts.npy          occurrences of every id, for smoothed masking
  tokenizer/                the tokenizer's files (save_pretrained), so that a
                            run can ship them with its student
  metadata.json             tokenizer (source, fingerprint, vocabulary hash
                            and size, special ids), max_len, sequence and token
                            counts per shard, written last: its presence means
                            complete

Each shard is written to a `.tmp` file and renamed into place, so a crash never
leaves a half-written shard where training would read it. `progress.json`
records, after every shard, the first document (and the piece of it) not yet
written; a rerun resumes from there and writes the same shards as an
uninterrupted run.
A finished directory is left as it is; one prepared with another tokenizer or
length is refused, never overwritten.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from typing import Iterable, Iterator

import numpy as np

from jaxdistil.data import sources
from jaxdistil.data import tokenizer as tokenizer_lib

MIN_TOKENS = 12          # the reference drops sequences of 11 tokens or fewer
SHARD_SIZE = 20000       # sequences a shard, by default
METADATA = 'metadata.json'
PROGRESS = 'progress.json'


class PrepareError(ValueError):
  """Bad input to `prepare`; the message is one line naming the problem."""


def shard_name(i: int) -> str:
  return f'shard-{i:05d}.tfrecord'


def cut(ids: list[int], max_len: int, cls: int, sep: int, unk: int) -> Iterator:
  """cls + up to max_len - 2 ids + sep, for consecutive pieces of `ids` (cls,
  sep and unk are the tokenizer's ids: [CLS] [SEP] [UNK], or <s> </s> <unk>)."""
  body = max_len - 2
  for start in range(0, len(ids), body):
    piece = ids[start:start + body]
    if len(piece) + 2 < MIN_TOKENS:
      continue
    if sum(1 for t in piece if t == unk) * 2 >= len(piece):
      continue
    yield [cls] + piece + [sep]


def _batches(items: Iterable, size: int) -> Iterator[list]:
  batch = []
  for item in items:
    batch.append(item)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def _write_shard(path: str, sequences: list, dtype) -> None:
  import tensorflow as tf
  tmp = path + '.tmp'
  with tf.io.TFRecordWriter(tmp) as writer:
    for seq in sequences:
      writer.write(np.asarray(seq, dtype).tobytes())
  os.replace(tmp, path)


def _atomic_json(path: str, obj) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)


def read_metadata(directory: str) -> dict | None:
  path = os.path.join(directory, METADATA)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def prepare_command(meta: dict, tokenizer: str, output: str = 'DIR') -> str:
  """The `python -m jaxdistil.prepare` command that prepares the corpus of
  `meta` (a finished directory's metadata) again, with `tokenizer`, into
  `output`: what to run when that directory does not fit a teacher."""
  source = meta.get('source', '')
  source = source if isinstance(source, str) else ','.join(source)
  args = [f'--source={shlex.quote(source)}',
          f'--tokenizer={shlex.quote(tokenizer)}', f'--max_len={meta["max_len"]}']
  if meta.get('format', 'auto') != 'auto':
    args.append(f'--format={meta["format"]}')
  if meta.get('shard_size', SHARD_SIZE) != SHARD_SIZE:
    args.append(f'--shard_size={meta["shard_size"]}')
  return ' '.join(['python -m jaxdistil.prepare'] + args + [f'--output={output}'])


def prepare(source, tokenizer: str, max_len: int, output: str,
            fmt: str = 'auto', shard_size: int = SHARD_SIZE, doc_batch: int = 512,
            max_positions: int = 512, progress_bar: bool = True,
            tfds_data_dir: str | None = None,
            teacher_vocab_size: int | None = None) -> dict:
  """Prepare `output` from `source` (globs); returns the metadata."""
  if max_len < MIN_TOKENS:
    raise PrepareError(f'max_len={max_len} leaves no room: sequences of fewer than '
                       f'{MIN_TOKENS} tokens are dropped; use at least {MIN_TOKENS}')
  if max_len > max_positions:
    raise PrepareError(f'max_len={max_len} exceeds the model\'s {max_positions} '
                       f'positions: lower --max_len')
  # A bad glob or an unbuilt TFDS dataset fails here, before anything is written.
  docs = sources.read_documents(source, fmt, tfds_data_dir)
  tok = tokenizer_lib.load(tokenizer)
  ids = tokenizer_lib.special_ids(tok)
  vocab_size = len(tok)
  if teacher_vocab_size and vocab_size != teacher_vocab_size:
    raise PrepareError(f'tokenizer {tokenizer!r} has {vocab_size} tokens but the '
                       f'teacher\'s vocabulary has {teacher_vocab_size}: use the '
                       f'teacher\'s own tokenizer')
  fingerprint = tokenizer_lib.fingerprint(tok)
  header = {'tokenizer': tokenizer, 'tokenizer_fingerprint': fingerprint,
            'vocab_size': vocab_size, 'special_ids': ids, 'max_len': max_len,
            'dtype': 'uint16' if vocab_size <= 65536 else 'int32',
            'shard_size': shard_size}

  done = read_metadata(output)
  if done is not None:
    for key in ('tokenizer_fingerprint', 'max_len', 'vocab_size'):
      if done.get(key) != header[key]:
        raise PrepareError(
            f'{output!r} was prepared with another {key} ({done.get(key)!r}, not '
            f'{header[key]!r}): choose a new --output; nothing was changed')
    return done                             # finished: nothing to do
  os.makedirs(output, exist_ok=True)

  progress_path = os.path.join(output, PROGRESS)
  # Where the written shards end: the first document with a sequence not yet
  # written, and how many of its sequences were (documents span shards).
  state = {'next_doc': 0, 'next_piece': 0, 'shards': []}
  counts = np.zeros(vocab_size, np.int64)
  if os.path.exists(progress_path):
    with open(progress_path) as f:
      state = json.load(f)
    if state.get('header') != header:
      raise PrepareError(f'{output!r} holds an unfinished preparation with other '
                         f'settings: choose a new --output; nothing was changed')
    counts = np.load(os.path.join(output, 'token_counts.partial.npy'))
  for name in os.listdir(output):           # a shard a crash left half-written
    if name.endswith('.tmp'):
      os.remove(os.path.join(output, name))

  dtype = np.dtype(header['dtype']).newbyteorder('<')
  bar = None
  if progress_bar:
    from tqdm import tqdm
    bar = tqdm(unit=' docs', desc='prepare', file=sys.stderr)
  pending: list = []                        # (doc index, piece index, ids)
  docs_seen = 0
  tokens_seen = 0

  def write_shards(last: bool):
    nonlocal pending
    while len(pending) >= shard_size or (last and pending):
      chunk, pending = pending[:shard_size], pending[shard_size:]
      i = len(state['shards'])
      _write_shard(os.path.join(output, shard_name(i)), [c[2] for c in chunk], dtype)
      counts[:] += np.bincount(np.concatenate([c[2] for c in chunk]),
                               minlength=vocab_size)
      state['shards'].append({'file': shard_name(i), 'sequences': len(chunk),
                              'tokens': int(sum(len(c[2]) for c in chunk))})
      if pending:
        state['next_doc'], state['next_piece'] = pending[0][0], pending[0][1]
      else:
        state['next_doc'], state['next_piece'] = docs_seen, 0
      state['header'] = header
      np.save(os.path.join(output, 'token_counts.partial.npy'), counts)
      _atomic_json(progress_path, state)

  numbered = enumerate(docs)
  for batch in _batches(numbered, doc_batch):
    docs_seen = batch[-1][0] + 1            # skipped documents count too
    batch = [(d, text) for d, text in batch if d >= state['next_doc']]
    if not batch:
      continue
    encoded = tok([text for _, text in batch], add_special_tokens=False,
                  split_special_tokens=True)['input_ids']
    tokens_seen += sum(len(e) for e in encoded)
    for (d, _), doc_ids in zip(batch, encoded):
      pieces = cut(doc_ids, max_len, ids['cls'], ids['sep'], ids['unk'])
      for k, seq in enumerate(pieces):
        if d == state['next_doc'] and k < state['next_piece']:
          continue                          # already in a written shard
        pending.append((d, k, seq))
    write_shards(last=False)
    if bar is not None:
      bar.update(len(batch))
      bar.set_postfix(tokens=f'{tokens_seen:,}', shards=len(state['shards']))
  write_shards(last=True)
  if bar is not None:
    bar.close()

  if not state['shards']:
    raise PrepareError(f'the corpus {source!r} yielded no sequence of '
                       f'{MIN_TOKENS} tokens or more: check the source and --format')
  np.save(os.path.join(output, 'token_counts.npy'), counts)
  # The tokenizer travels with the data, so a run (and its HF export) can
  # name the tokenizer its ids came from without the original path.
  tok.save_pretrained(os.path.join(output, 'tokenizer'))
  # vocab_hash stays out of `header`, so that an unfinished preparation of an
  # earlier version (its progress.json holds the header) still resumes.
  metadata = dict(header, vocab_hash=tokenizer_lib.vocab_hash(tok),
                  shards=state['shards'],
                  num_sequences=sum(s['sequences'] for s in state['shards']),
                  num_tokens=sum(s['tokens'] for s in state['shards']),
                  num_documents=docs_seen,
                  source=source if isinstance(source, str) else list(source),
                  format=fmt)
  _atomic_json(os.path.join(output, METADATA), metadata)
  os.remove(progress_path)
  os.remove(os.path.join(output, 'token_counts.partial.npy'))
  return metadata
