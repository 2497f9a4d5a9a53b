"""A run's metrics on process 0: metrics.jsonl, TensorBoard, and remote sync.

`train` writes one JSON line per step (and TensorBoard scalars) into its
workdir; a gs:// workdir gets the JSONL through a local file synced at each
checkpoint (see `Writer`).
"""

from __future__ import annotations

import json
import os
import sys

import jax

from jaxdistil import fs
from jaxdistil import workdir as layout


class Writer:
  """Metrics on process 0: JSONL (every step) and TensorBoard event files.

  A remote workdir (gs://) cannot take the JSONL directly: a GCS object is
  written whole, with no append, and rewriting it every step would be slow and
  costly. There the lines go to a local file, kept under the temp dir and named
  after the workdir (so a rerun on the same VM appends to it), and `sync()`
  uploads a copy to WORKDIR/metrics.jsonl: `train` calls it at every checkpoint,
  and `close()` does at the end, so the copy is at most one checkpoint behind,
  the steps a resumed run redoes anyway. On a new VM (the old one preempted) the
  local file starts as that copy. TensorBoard writes gs:// itself.
  """

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    if not self.active:
      return
    self.remote = None
    self.path = os.path.join(workdir, layout.METRICS)
    if fs.is_remote(workdir):
      self.remote = fs.join(workdir, layout.METRICS)
      self.path = os.path.join(fs.local_cache(workdir), layout.METRICS)
      os.makedirs(os.path.dirname(self.path), exist_ok=True)
      # Another VM wrote more than this one holds (or this one holds none).
      if fs.exists(self.remote) and (not os.path.exists(self.path) or
                                     os.path.getsize(self.path) < fs.size(self.remote)):
        fs.copy_file(self.remote, self.path)
    self.jsonl = open(self.path, 'a')
    import tensorflow as tf     # only for its summary writer
    self._tf = tf
    self.tb = tf.summary.create_file_writer(fs.join(workdir, layout.TENSORBOARD))

  def write(self, step: int, metrics: dict) -> None:
    if not self.active:
      return
    self.jsonl.write(json.dumps(dict(metrics, step=step)) + '\n')
    self.jsonl.flush()
    with self.tb.as_default(step=step):
      for k, v in metrics.items():
        self._tf.summary.scalar(k if '/' in k else f'train/{k}', v)

  def sync(self) -> None:
    """Uploads the local JSONL to a remote workdir (nothing to do locally). A
    failed upload only warns: the next one copies the whole file again."""
    if not self.active or self.remote is None:
      return
    self.jsonl.flush()
    self._upload('the next checkpoint tries again')

  def _upload(self, otherwise: str) -> None:
    try:
      fs.copy_file(self.path, self.remote)
    except OSError as e:
      print(f'jaxdistil.train: warning: cannot upload {self.path} to '
            f'{self.remote} ({e}); {otherwise}', file=sys.stderr)

  def close(self) -> None:
    if self.active:
      self.jsonl.close()
      self.tb.close()
      if self.remote is not None:
        self._upload('the metrics are only in the local file')
