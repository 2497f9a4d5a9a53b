"""`predict --runtime=onnxruntime`: a classifier folder written by
`python -m jaxdistil.convert export --format=onnx`, run by ONNX Runtime.

`OnnxClassifier` has the XLA `predict.Classifier`'s surface (`scores`,
`labels`, `regression`, `batch_size`, `where`): the same tokenization
(`predict_io.encode`) and the same batches of consecutive records, each padded
to its longest row (ONNX Runtime takes any length, so there are no buckets to
compile). The labels and the tokenizer's style come from the folder's
`config.json`; only the inputs the graph declares are fed.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from jaxdistil import predict_io as io
from jaxdistil.convert.onnx_out import EXTRA, MODEL


class OnnxClassifier:

  def __init__(self, folder: str, tokenizer: str | None, batch_size: int,
               max_len: int, threads: int = 0):
    from jaxdistil.convert import classifier as classifier_lib
    from jaxdistil.convert import hf_config
    from jaxdistil.glue.tasks import GlueError
    from jaxdistil.models.config import ROBERTA_FAMILIES
    path = os.path.join(folder, MODEL)
    if not os.path.isfile(path):
      raise GlueError(f'{folder} has no {MODEL}: export one with `python -m '
                      f'jaxdistil.convert export --format=onnx`')
    try:
      import onnxruntime as ort
    except ImportError:
      raise GlueError(f'--runtime=onnxruntime needs onnxruntime: {EXTRA}') from None
    try:
      with open(os.path.join(folder, 'config.json')) as f:
        hf = json.load(f)
      _, cfg = hf_config.to_ours(hf, os.path.join(folder, 'config.json'))
      options = ort.SessionOptions()
      options.intra_op_num_threads = threads
      self.session = ort.InferenceSession(path, options,
                                          providers=['CPUExecutionProvider'])
      outputs = self.session.get_outputs()[0].shape[-1]
      info = classifier_lib.info_from_hf(
          hf, outputs if isinstance(outputs, int) else len(hf.get('id2label', {})),
          folder)
    except (OSError, ValueError) as e:
      raise GlueError(f'cannot load ONNX model {folder!r}: '
                      f'{(str(e).splitlines() or [""])[0]}') from None
    except Exception as e:      # onnxruntime's own errors: a broken file
      raise GlueError(f'ONNX Runtime cannot load {path}: '
                      f'{(str(e).splitlines() or [""])[0]}') from None
    self.tokenizer = _tokenizer(folder, tokenizer)
    self.inputs = [i.name for i in self.session.get_inputs()]
    self.style = 'roberta' if cfg.family in ROBERTA_FAMILIES else 'bert'
    self.max_len = min(max_len, cfg.max_position_embeddings - cfg.position_offset)
    self.batch_size = batch_size
    self.labels = list(info.labels)
    self.regression = info.is_regression

  def logits(self, arrays: dict, progress=None) -> np.ndarray:
    """[N, outputs] float32 logits, in order."""
    lengths = arrays['attention_mask'].sum(axis=1)
    outs = []
    for start in range(0, len(lengths), self.batch_size):
      rows = slice(start, start + self.batch_size)
      length = max(int(lengths[rows].max()), 1)
      feed = {k: np.asarray(arrays[k][rows, :length], np.int64)
              for k in self.inputs}
      outs.append(np.asarray(self.session.run(['logits'], feed)[0], np.float32))
      if progress is not None:
        progress(len(outs[-1]))
    return np.concatenate(outs)

  def scores(self, records: Sequence[io.Record], progress=None) -> np.ndarray:
    arrays = io.encode(records, self.tokenizer, self.max_len, self.style)
    return io.probabilities(self.logits(arrays, progress), self.regression)

  def where(self) -> str:
    return f'CPU, batch {self.batch_size}'


def _tokenizer(folder: str, name: str | None):
  from jaxdistil.data import tokenizer as tokenizer_lib
  from jaxdistil.glue.tasks import GlueError
  if name:
    from jaxdistil.glue.run import load_tokenizer
    return load_tokenizer(name)
  if not tokenizer_lib.has_tokenizer(folder):
    raise GlueError(f'{folder} has no tokenizer files: pass --tokenizer=DIR')
  try:
    return tokenizer_lib.load_folder(folder)
  except ValueError as e:
    raise GlueError(str(e).splitlines()[0]) from None
