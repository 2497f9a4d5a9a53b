"""Packing prepared sequences into fixed-length rows: which sequences share a row.

The algorithm is an online best-fit over a window of open rows, fed with the
sequences in the epoch's shuffled order:

- each sequence goes into the open row with the least room that still holds
  it (best fit); if none does, it opens a new row;
- a row closes (is emitted) as soon as its room is smaller than the shortest
  sequence of the corpus, since nothing can join it any more;
- at most `window` rows are open: opening one more emits the fullest;
- at the end of the epoch the rows still open are emitted, oldest first.

Why this one. Offline first-fit-decreasing, or Krell et al.'s histogram-based
packing, sort by length, which ties a row's content to its length class; here
rows are filled in the shuffled order, so a batch (consecutive rows) holds the
sequences of a contiguous stretch of a uniform permutation, a few at most
`window` rows late: the mix within batches stays that of a uniform shuffle.
Best fit over 64 open rows leaves well under 1% padding on the shared corpus
(BENCHMARKS.md), against 36-76% for one sequence a row. It needs only the
lengths, so an epoch's whole plan is computed at its start (about a second per
400,000 sequences, in plain Python with bisect), from (seed, epoch) alone: a
resumed run recomputes the same plan and starts at its saved row, with no data
read twice.

Unpacked rows (`packing=False`) are the same plan with one sequence a row.
"""

from __future__ import annotations

import array
import bisect

import numpy as np


def pack(lengths: np.ndarray, order: np.ndarray, max_len: int,
         window: int = 64) -> tuple[np.ndarray, np.ndarray]:
  """Rows for the sequences `order` (their ids, in visiting order).

  Returns (ids, splits): row r holds sequences ids[splits[r]:splits[r + 1]],
  laid out in that order. Every id of `order` appears exactly once.
  """
  lengths = np.asarray(lengths)
  if len(order) == 0:
    return np.zeros(0, np.int64), np.zeros(1, np.int64)
  longest = int(lengths[order].max())
  if longest > max_len:
    raise ValueError(f'a sequence of {longest} tokens cannot fit a row of {max_len}')
  shortest = int(lengths[order].min())
  free: list[tuple[int, int]] = []      # (room, row serial), sorted
  contents: dict[int, list[int]] = {}
  # The plan grows in compact arrays (4 bytes an entry); only the open rows are
  # Python lists, and the order is walked in chunks, so a corpus of millions of
  # sequences never becomes millions of Python objects at once.
  out_ids, out_sizes = array.array('q'), array.array('q')

  def emit(row):
    out_ids.extend(row)
    out_sizes.append(len(row))

  serial = 0
  for chunk in range(0, len(order), 1 << 16):
    part = order[chunk:chunk + (1 << 16)]
    for seq, n in zip(part.tolist(), lengths[part].tolist()):
      i = bisect.bisect_left(free, (n, -1))
      if i < len(free):
        room, s = free.pop(i)
        contents[s].append(seq)
      else:
        s, room = serial, max_len
        serial += 1
        contents[s] = [seq]
      room -= n
      if room < shortest:
        emit(contents.pop(s))
        continue
      bisect.insort(free, (room, s))
      if len(free) > window:
        _, fullest = free.pop(0)
        emit(contents.pop(fullest))
  for s in sorted(contents):
    emit(contents[s])
  splits = np.zeros(len(out_sizes) + 1, np.int64)
  splits[1:] = np.cumsum(np.frombuffer(out_sizes, np.int64))
  return np.frombuffer(out_ids, np.int64).copy(), splits


def one_per_row(order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The unpacked plan: each sequence its own row."""
  return np.asarray(order, np.int64), np.arange(len(order) + 1, dtype=np.int64)


def layout(pieces: list[np.ndarray], max_len: int, pad_id: int):
  """One row from its sequences: (ids, segment_ids, position_ids), int32 [max_len].

  Segment ids are 0 for padding, then 1, 2, ... per sequence; positions restart
  at 0 in each sequence (and are 0 on padding).
  """
  ids = np.full(max_len, pad_id, np.int32)
  seg = np.zeros(max_len, np.int32)
  pos = np.zeros(max_len, np.int32)
  start = 0
  for k, piece in enumerate(pieces):
    n = len(piece)
    ids[start:start + n] = piece
    seg[start:start + n] = k + 1
    pos[start:start + n] = np.arange(n, dtype=np.int32)
    start += n
  return ids, seg, pos
