"""Training input: prepared shards -> masked, fixed-shape batches, resumable exactly.

Per host (`process_index` of `process_count`): the host reads shards
`index, index + count, ...` of the prepared directory. Each epoch:

1. the host's shards are visited in an order drawn from (seed, epoch);
2. each shard is read whole (a shard is a few MB) and its records are taken in
   an order drawn from (seed, epoch, shard): a full shuffle within the shard;
3. each example is masked inside the tf.data graph with stateless randomness
   keyed on (seed, epoch, global example id) (`masking`), and padded to
   `max_len`;
4. examples form batches of the per-host batch size; an epoch's last partial
   batch is dropped, so batches never straddle epochs.

The position is (epoch, batches taken in that epoch). Because every order and
every mask is a pure function of the seed, the epoch and the example, an
iterator built at a saved position yields exactly the batches the uninterrupted
one would have: it skips whole shards by their recorded sizes and only the start
of one shard, rather than replaying the epoch.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from jaxdistil.data import masking
from jaxdistil.data import prepare as prepare_lib


@dataclasses.dataclass(frozen=True)
class InputConfig:
  directory: str
  batch_size: int                 # per host
  seed: int = 0
  mask_prob: float = 0.15
  smoothing: float = 0.0          # 0.7 masks rare tokens more, as the reference
  process_index: int = 0
  process_count: int = 1
  # 'all' shards, or 'train' (all but the last) / 'eval' (the last, held out)
  split: str = 'all'


class InputError(ValueError):
  """Prepared data that cannot be used; one line naming the problem."""


def _rng(*keys: int) -> np.random.Generator:
  return np.random.default_rng([k & 0xFFFFFFFF for k in keys])


class Pipeline:
  """An iterator of numpy batches with a checkpointable `position`."""

  def __init__(self, cfg: InputConfig, position: dict | None = None,
               expected_vocab_size: int | None = None):
    meta = prepare_lib.read_metadata(cfg.directory)
    if meta is None:
      raise InputError(f'{cfg.directory!r} holds no finished preparation '
                       f'(no metadata.json): run python -m jaxdistil.prepare first')
    if expected_vocab_size is not None and meta['vocab_size'] != expected_vocab_size:
      raise InputError(f'{cfg.directory!r} was prepared with a vocabulary of '
                       f'{meta["vocab_size"]} but the teacher has '
                       f'{expected_vocab_size}: prepare it with the teacher\'s '
                       f'tokenizer')
    self.cfg, self.meta = cfg, meta
    self.max_len = meta['max_len']
    shards = meta['shards']
    if len(shards) < cfg.process_count:
      raise InputError(f'{len(shards)} shard(s) cannot feed {cfg.process_count} '
                       f'hosts: prepare with a smaller --shard_size')
    offsets = np.concatenate([[0], np.cumsum([s['sequences'] for s in shards])])
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
      mine = [i for i in chosen][cfg.process_index::cfg.process_count]
    self._shards = [(i, os.path.join(cfg.directory, shards[i]['file']),
                     shards[i]['sequences'], int(offsets[i])) for i in mine]
    host_examples = sum(s[2] for s in self._shards)
    self.batches_per_epoch = host_examples // cfg.batch_size
    if self.batches_per_epoch == 0:
      raise InputError(f'this host\'s {host_examples} sequences make no batch of '
                       f'{cfg.batch_size}: use a smaller batch or more data')
    ids = meta['special_ids']
    self._mask_cfg = masking.MaskingConfig(
        vocab_size=meta['vocab_size'], mask_id=ids['mask'], pad_id=ids['pad'],
        special_ids=tuple(sorted(set(ids.values()))), mask_prob=cfg.mask_prob,
        smoothing=cfg.smoothing)
    counts = np.load(os.path.join(cfg.directory, 'token_counts.npy'))
    self._weights = masking.token_weights(counts, self._mask_cfg)
    self.position = dict(position or {'epoch': 0, 'batch': 0})
    self._iterator = None

  # -- one epoch as a tf.data graph --------------------------------------------

  def _shard_dataset(self, shard, epoch: int, skip: int) -> tf.data.Dataset:
    index, path, n, offset = shard
    order = _rng(self.cfg.seed, epoch, index, 1).permutation(n)[skip:]
    records = tf.data.TFRecordDataset(path).batch(n + 1).get_single_element()
    picked = tf.gather(records, order)
    ids = tf.constant(order + offset, tf.int64)
    return tf.data.Dataset.from_tensor_slices((ids, picked))

  def _epoch_dataset(self, epoch: int, skip_examples: int) -> tf.data.Dataset:
    order = _rng(self.cfg.seed, epoch, 0).permutation(len(self._shards))
    parts = []
    for k in order:
      shard = self._shards[k]
      if skip_examples >= shard[2]:          # wholly consumed: not even opened
        skip_examples -= shard[2]
        continue
      parts.append((shard, skip_examples))
      skip_examples = 0
    ds = None
    for shard, skip in parts:
      part = tf.data.Dataset.from_tensors(0).flat_map(
          lambda _, shard=shard, skip=skip: self._shard_dataset(shard, epoch, skip))
      ds = part if ds is None else ds.concatenate(part)
    return ds

  def _build(self):
    cfg, mask_cfg, weights = self.cfg, self._mask_cfg, self._weights
    max_len, pad = self.max_len, mask_cfg.pad_id
    dtype = tf.uint16 if self.meta['dtype'] == 'uint16' else tf.int32
    epoch, batch = self.position['epoch'], self.position['batch']

    def example(gid, record, epoch_t):
      ids = tf.cast(tf.io.decode_raw(record, dtype), tf.int32)
      ids = tf.pad(ids, [[0, max_len - tf.shape(ids)[0]]], constant_values=pad)
      ids = tf.ensure_shape(ids, [max_len])
      return masking.mask_example(
          ids, masking.example_seed(cfg.seed, epoch_t, gid), weights, mask_cfg)

    def epoch_batches(e, skip_batches):
      ds = self._epoch_dataset(e, skip_batches * cfg.batch_size)
      ds = ds.map(lambda gid, rec: example(gid, rec, e),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
      return ds.batch(cfg.batch_size, drop_remainder=True).prefetch(
          tf.data.AUTOTUNE)

    def generator():
      e, b = epoch, batch
      while True:
        for out in epoch_batches(e, b).as_numpy_iterator():
          yield out
        e, b = e + 1, 0

    return generator()

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    if self._iterator is None:
      self._iterator = self._build()
    out = next(self._iterator)
    self.position['batch'] += 1
    if self.position['batch'] == self.batches_per_epoch:
      self.position = {'epoch': self.position['epoch'] + 1, 'batch': 0}
    return out
