"""Random access to the sequences of prepared shards.

A prepared shard is a TFRecord file: each record is an 8-byte little-endian
payload length, a 4-byte CRC of it, the payload (one sequence's token ids), and a
4-byte CRC of the payload. Opening a shard walks those headers once (a few
microseconds a record, no payload read) to find every sequence's byte offset and
length; the payloads are then read from a read-only memory map of the file on
demand. So any sequence of the host's corpus can be read in any order, and what
the host keeps in memory is the index, 12 bytes a sequence (an int64 offset and
an int32 length), not the corpus: the operating system's page cache holds what
was read, and gives it back under pressure.

This reads directories written by any jaxdistil `prepare` (the format has not
changed); the CRCs are not verified (`tf.data.TFRecordDataset` would), but a
shard whose framing does not add up to its size, or whose record count differs
from `metadata.json`'s, is refused as damaged.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import struct

import numpy as np

HEADER = 12        # uint64 length + uint32 CRC of the length
FOOTER = 4         # uint32 CRC of the payload
MAX_OPEN_MAPS = 256


class DamagedShard(ValueError):
  """A shard whose framing or size does not match what prepare writes."""


def scan(path: str, expected: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(payload byte offsets int64, payload byte lengths int64) of a TFRecord file."""
  with open(path, 'rb') as f:
    data = f.read()
  size = len(data)
  offsets, lengths = [], []
  pos = 0
  unpack = struct.Struct('<Q').unpack_from
  while pos < size:
    if pos + HEADER > size:
      raise DamagedShard(f'{path} ends inside a record header at byte {pos}')
    (n,) = unpack(data, pos)
    offsets.append(pos + HEADER)
    lengths.append(n)
    pos += HEADER + n + FOOTER
  if pos != size:
    raise DamagedShard(f'{path} ends inside a record (its last record claims '
                       f'{pos - size} bytes more than the file holds)')
  if expected is not None and len(offsets) != expected:
    raise DamagedShard(f'{path} holds {len(offsets)} records but metadata.json '
                       f'says {expected}')
  return np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)


@dataclasses.dataclass
class Corpus:
  """The sequences of several shards, numbered 0..n-1 in shard order."""
  shard: np.ndarray       # int32 [n]: which of `paths` holds sequence i
  offset: np.ndarray      # int64 [n]: its byte offset there
  length: np.ndarray      # int32 [n]: its length in tokens
  paths: list[str]
  dtype: np.dtype

  def __post_init__(self):
    # A map holds a file descriptor: keep the most recently used ones open
    # (a corpus can have thousands of shards; the shuffle touches them all).
    self._map = functools.lru_cache(maxsize=MAX_OPEN_MAPS)(
        lambda k: np.memmap(self.paths[k], np.uint8, mode='r'))

  def __len__(self) -> int:
    return len(self.length)

  def read(self, i: int) -> np.ndarray:
    """Sequence i's token ids (copied out of the memory map)."""
    start = int(self.offset[i])
    stop = start + int(self.length[i]) * self.dtype.itemsize
    return np.array(self._map(int(self.shard[i]))[start:stop].view(self.dtype))

  @property
  def index_bytes(self) -> int:
    return self.shard.nbytes + self.offset.nbytes + self.length.nbytes


def open_corpus(paths: list[str], counts: list[int], dtype: str) -> Corpus:
  """Index the shards at `paths` (with `counts` records each, per metadata)."""
  dt = np.dtype(dtype).newbyteorder('<')
  shard, offset, length = [], [], []
  for k, (path, count) in enumerate(zip(paths, counts)):
    if not os.path.isfile(path):
      raise DamagedShard(f'{path} is missing')
    off, nbytes = scan(path, count)
    if np.any(nbytes % dt.itemsize):
      raise DamagedShard(f'{path} holds a record that is not a whole number of '
                         f'{dtype} token ids')
    shard.append(np.full(len(off), k, np.int32))
    offset.append(off)
    length.append((nbytes // dt.itemsize).astype(np.int32))
  cat = lambda parts, t: np.concatenate(parts) if parts else np.zeros(0, t)
  return Corpus(cat(shard, np.int32), cat(offset, np.int64),
                cat(length, np.int32), list(paths), dt)
