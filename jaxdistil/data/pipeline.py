"""Training input: prepared shards -> shuffled, packed, masked rows, resumable exactly.

Per host (`process_index` of `process_count`): the host reads shards
`index, index + count, ...` of the prepared directory, indexed for random access
(`records`: byte offsets and lengths, not the tokens). Each epoch:

1. the host's sequences, all of them, are visited in a uniformly random order
   drawn from (seed, epoch): a corpus-wide shuffle, not shard by shard;
2. in that order they are packed into rows of `max_len` tokens (`packing`):
   several `[CLS] ... [SEP]` (RoBERTa: `<s> ... </s>`) sequences a row, with
   `segment_ids` (0 = padding, 1, 2, ... per sequence) and `position_ids`
   restarting at 0 in each sequence (a model adds its own offset); with
   `packing=False` each row holds one sequence, padded with the tokenizer's pad
   id (every special id is read from the metadata, none assumed);
3. each row is read from the memory-mapped shards and masked inside the tf.data
   graph with stateless randomness keyed on (seed, epoch, row) (`masking`);
4. rows form batches of the per-host batch size; an epoch's last partial batch
   is dropped, so batches never straddle epochs.

The position is (epoch, batches taken in that epoch). An epoch's plan (its
order and its rows) is a pure function of (seed, epoch) and the sequence
lengths, and every mask of (seed, epoch, row); an iterator built at a saved
position recomputes the plan from the lengths alone and starts at its row, so
it yields exactly the batches the uninterrupted one would have, with nothing
read twice.

Memory on the host, bounded by the host's share of the corpus: the index (16
bytes a sequence) and the current epoch's plan (16 bytes a sequence), plus the
rows in flight; the tokens stay on disk, memory-mapped.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import weakref

import numpy as np
import tensorflow as tf

from jaxdistil.data import masking
from jaxdistil.data import packing as packing_lib
from jaxdistil.data import corpus as corpus_lib
from jaxdistil.data import records
from jaxdistil.data import tokenizer as tokenizer_lib


@dataclasses.dataclass(frozen=True)
class InputConfig:
  directory: str
  batch_size: int                 # per host, in rows
  seed: int = 0
  max_len: int = 0                # row length; 0: the prepared sequence length
  packing: bool = True            # several sequences a row (False: one)
  pack_window: int = 64           # open rows the packer fills at once
  mask_prob: float = 0.15
  smoothing: float = 0.0          # 0.7 masks rare tokens more, as the reference
  mask_token_prob: float = 0.8    # of the chosen: [MASK]
  random_token_prob: float = 0.1  # of the chosen: a random token (the rest kept)
  process_index: int = 0
  process_count: int = 1
  # 'all' shards, or 'train' (all but the last) / 'eval' (the last, held out)
  split: str = 'all'


class InputError(ValueError):
  """Prepared data that cannot be used; one line naming the problem."""


def _rng(*keys: int) -> np.random.Generator:
  return np.random.default_rng([k & 0xFFFFFFFF for k in keys])


# Pipelines with a live tf.data iterator. Whatever is still open when the
# interpreter exits is closed by `_close_open` first, while Python can still
# run the iterator's numpy_function callbacks: left to finalisation, the
# iterator's prefetch threads wait on a Python that is going away, and the exit
# stalls for minutes (or hangs).
_OPEN: 'weakref.WeakSet[Pipeline]' = weakref.WeakSet()


@atexit.register
def _close_open() -> None:
  for pipeline in list(_OPEN):
    pipeline.close()


class Pipeline:
  """An iterator of numpy batches with a checkpointable `position`."""

  def __init__(self, cfg: InputConfig, position: dict | None = None,
               expected_vocab_size: int | None = None):
    meta = corpus_lib.read_metadata(cfg.directory)
    if meta is None:
      raise InputError(f'{cfg.directory!r} holds no finished preparation '
                       f'(no metadata.json): run python -m jaxdistil.prepare first')
    self.cfg, self.meta = cfg, meta
    if expected_vocab_size is not None:
      self.check_vocab_size(expected_vocab_size)
    self.max_len = cfg.max_len or meta['max_len']
    if meta['max_len'] > self.max_len:
      raise InputError(f'{cfg.directory!r} holds sequences of up to '
                       f'{meta["max_len"]} tokens, longer than rows of '
                       f'max_len={self.max_len}: set max_len={meta["max_len"]} '
                       f'or prepare again with --max_len={self.max_len}')
    shards = meta['shards']
    if len(shards) < cfg.process_count:
      raise InputError(f'{len(shards)} shard(s) cannot feed {cfg.process_count} '
                       f'hosts: prepare with a smaller --shard_size')
    if cfg.split not in ('all', 'train', 'eval'):
      raise InputError(f'split={cfg.split!r}: use all, train or eval')
    if cfg.split != 'all' and len(shards) < 2:
      raise InputError(f'{cfg.directory!r} has one shard: a held-out split needs '
                       f'two or more (prepare with a smaller --shard_size)')
    chosen = {'all': range(len(shards)), 'train': range(len(shards) - 1),
              'eval': range(len(shards) - 1, len(shards))}[cfg.split]
    if cfg.split == 'eval':              # every host evaluates on the held-out shard
      mine = list(chosen)
    else:
      mine = list(chosen)[cfg.process_index::cfg.process_count]
    try:
      self.corpus = records.open_corpus(
          [os.path.join(cfg.directory, shards[i]['file']) for i in mine],
          [shards[i]['sequences'] for i in mine], meta['dtype'])
    except records.DamagedShard as e:
      raise InputError(f'{e}: prepare the directory again') from None
    if len(self.corpus) and int(self.corpus.length.max()) > self.max_len:
      raise InputError(f'{cfg.directory!r} holds a sequence of '
                       f'{int(self.corpus.length.max())} tokens, longer than '
                       f'max_len={self.max_len} (its metadata says '
                       f'{meta["max_len"]}): prepare it again')
    self._plans: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    self.batches_per_epoch = self.epoch_batches(0)
    if self.batches_per_epoch == 0:
      raise InputError(f'this host\'s {len(self.corpus)} sequences make '
                       f'{self.rows(0)} rows, no batch of {cfg.batch_size}: use a '
                       f'smaller batch or more data')
    ids = meta['special_ids']
    self._mask_cfg = masking.MaskingConfig(
        vocab_size=meta['vocab_size'], mask_id=ids['mask'], pad_id=ids['pad'],
        special_ids=tuple(sorted(set(ids.values()))), mask_prob=cfg.mask_prob,
        smoothing=cfg.smoothing, mask_token_prob=cfg.mask_token_prob,
        random_token_prob=cfg.random_token_prob)
    counts = np.load(os.path.join(cfg.directory, 'token_counts.npy'))
    self._weights = masking.token_weights(counts, self._mask_cfg)
    self.position = dict(position or {'epoch': 0, 'batch': 0})
    self._iterator = None

  def check_vocab_size(self, vocab_size: int) -> None:
    if self.meta['vocab_size'] != vocab_size:
      raise InputError(f'{self.cfg.directory!r} was prepared with a vocabulary of '
                       f'{self.meta["vocab_size"]} but the teacher has '
                       f'{vocab_size}: prepare it with the teacher\'s tokenizer')

  def check_tokenizer(self, folder: str | None) -> None:
    """Refuses, in one line, data prepared with another tokenizer than the
    teacher's (`folder`, its tokenizer files; None: nothing to compare with):
    first by the special ids (a RoBERTa teacher on a BERT-prepared corpus: cls 0
    vs 101, pad 1 vs 0), then by the vocabulary's hash, which metadata written
    before `vocab_hash` lacks (that part is then skipped). The line names the
    command that prepares the corpus again with the teacher's tokenizer."""
    if not folder:
      return
    try:
      tok = tokenizer_lib.load_folder(folder)
    except tokenizer_lib.TokenizerError as e:
      raise InputError(f'cannot check {self.cfg.directory!r} against the '
                       f'teacher\'s tokenizer: {e}') from None
    diffs = tokenizer_lib.differences(self.meta, tok)
    if diffs:
      raise InputError(
          f'{self.cfg.directory!r} was prepared with another tokenizer than the '
          f'teacher\'s ({folder}): {"; ".join(diffs)}: prepare it again with '
          f'{corpus_lib.prepare_command(self.meta, folder)} and train with '
          f'--config.data=DIR')

  # -- the epoch's plan: which sequences make which row -------------------------

  def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(sequence ids, row splits) of `epoch`, from (seed, epoch) and the lengths."""
    if epoch not in self._plans:
      order = _rng(self.cfg.seed, epoch, 0x5EC5).permutation(len(self.corpus))
      if self.cfg.packing:
        plan = packing_lib.pack(self.corpus.length, order, self.max_len,
                                self.cfg.pack_window)
      else:
        plan = packing_lib.one_per_row(order)
      self._plans = {epoch: plan}       # only the current epoch is kept
    return self._plans[epoch]

  def rows(self, epoch: int) -> int:
    return len(self.plan(epoch)[1]) - 1

  def epoch_batches(self, epoch: int) -> int:
    return self.rows(epoch) // self.cfg.batch_size

  @property
  def real_tokens(self) -> int:
    """Tokens (without padding) in this host's sequences: one epoch's worth."""
    return int(self.corpus.length.sum(dtype=np.int64))

  def _row(self, epoch: int, row: int):
    ids, splits = self.plan(epoch)
    pieces = [self.corpus.read(int(q)) for q in ids[splits[row]:splits[row + 1]]]
    return packing_lib.layout(pieces, self.max_len, self._mask_cfg.pad_id)

  # -- one epoch as a tf.data graph --------------------------------------------

  def _epoch_dataset(self, epoch: int, first_batch: int) -> tf.data.Dataset:
    cfg, mask_cfg, weights = self.cfg, self._mask_cfg, self._weights
    max_len, packed = self.max_len, cfg.packing
    end = self.epoch_batches(epoch) * cfg.batch_size
    self.plan(epoch)

    def read(row):
      ids, seg, pos = tf.numpy_function(
          lambda r: self._row(epoch, int(r)), [row], [tf.int32] * 3,
          stateful=False)
      return tuple(tf.ensure_shape(x, [max_len]) for x in (ids, seg, pos))

    def example(row):
      ids, seg, pos = read(row)
      out = masking.mask_example(
          ids, masking.example_seed(cfg.seed, epoch, row), weights, mask_cfg)
      if packed:
        out.update(segment_ids=seg, position_ids=pos)
      return out

    ds = tf.data.Dataset.range(first_batch * cfg.batch_size, end)
    ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

  def _build(self):
    epoch, batch = self.position['epoch'], self.position['batch']

    def generator():
      e, b = epoch, batch
      while True:
        for out in self._epoch_dataset(e, b).as_numpy_iterator():
          yield out
        e, b = e + 1, 0

    return generator()

  def __iter__(self):
    return self

  def close(self) -> None:
    """Stops the tf.data iterator and its prefetch threads now. An iterator
    left to interpreter shutdown can hang it: its threads call back into
    Python (`numpy_function`) while Python is finalising. The position is
    kept: the next batch rebuilds the iterator there."""
    if self._iterator is not None:
      self._iterator.close()
      self._iterator = None

  def __next__(self) -> dict:
    if self._iterator is None:
      self._iterator = self._build()
      _OPEN.add(self)
    out = next(self._iterator)
    self.position['batch'] += 1
    if self.position['batch'] == self.epoch_batches(self.position['epoch']):
      self.position = {'epoch': self.position['epoch'] + 1, 'batch': 0}
    return out
