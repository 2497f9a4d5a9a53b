"""The frozen teacher's logits, computed once per example and kept on disk.

Task distillation runs the same frozen teacher over the same examples every
epoch and every seed; for a classifier its output is a few floats a row, so
it is computed once and cached in the run's workdir (TextBrewer has cached
teacher outputs since 0.2.1; MaxText precomputes top-k logits offline).

One file per (task, split): `teacher_logits.<task>.<split>.npz`, holding the
logits ([N, num_outputs], in the examples' order) and the key they were
computed for: the teacher's fingerprint (`fingerprint_teacher`) and the
data's (`fingerprint_examples`: the texts in their order, max_len, the
tokenizer). A file whose key matches is served as it is; a file computed by
another teacher or over other data is refused in one line naming what
differs, never overwritten: removing it, or another workdir, is the user's
call. Writes are atomic (a temporary file, then a rename), so a crash leaves
the old state: no file, never half of one.

Local folders only (`np.load` and `os.replace`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from typing import Callable

import numpy as np

from jaxdistil.glue.tasks import GlueError

FORMAT = 1
CHUNK = 1 << 20


def _hash_file(h, path: str) -> None:
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(CHUNK), b''):
      h.update(chunk)


def _hash_array(h, name: str, x) -> None:
  """Name, dtype, shape and every byte of one array (C order)."""
  import jax
  x = np.ascontiguousarray(np.asarray(jax.device_get(x)))
  h.update(f'{name}\t{x.dtype.str}\t{x.shape}\n'.encode())
  h.update(memoryview(x).cast('B'))


def _config_json(config) -> str:
  if dataclasses.is_dataclass(config):
    config = dataclasses.asdict(config)
  return json.dumps(config, sort_keys=True, default=str)


def _model_parts(teacher):
  """(config, params tree) of a loaded teacher: a `convert.Loaded` (its pooler
  included), a (config, params, ...) tuple, or {'config', 'params'}."""
  if isinstance(teacher, dict):
    return teacher.get('config'), teacher['params']
  if isinstance(teacher, tuple):
    return teacher[0], teacher[1]
  params = {'params': teacher.params}
  if getattr(teacher, 'pooler', None) is not None:
    params['pooler'] = teacher.pooler
  return teacher.config, params


def fingerprint_teacher(teacher) -> str:
  """sha256 identifying a teacher; changes when any weight does.

  A path (str or os.PathLike): every file below it (or the file itself), by
  relative name and full contents, read in 1 MiB chunks. A loaded teacher
  (`convert.Loaded`, (config, params, ...) or {'config', 'params'}): its config
  and every parameter array's path, dtype, shape and bytes (the arrays are
  copied to the host one at a time)."""
  import jax
  h = hashlib.sha256(f'jaxdistil teacher v{FORMAT}\n'.encode())
  if isinstance(teacher, (str, os.PathLike)):
    root = os.fspath(teacher)
    if os.path.isfile(root):
      files = [(os.path.basename(root), root)]
    elif os.path.isdir(root):
      files = sorted((os.path.relpath(os.path.join(d, f), root).replace(os.sep, '/'),
                      os.path.join(d, f))
                     for d, _, names in os.walk(root) for f in names)
    else:
      raise GlueError(f'teacher {root!r} does not exist: give the fine-tuned '
                      f'teacher\'s folder')
    for rel, path in files:
      h.update(f'file\t{rel}\t{os.path.getsize(path)}\n'.encode())
      _hash_file(h, path)
    return h.hexdigest()
  config, params = _model_parts(teacher)
  h.update(f'config\t{_config_json(config)}\n'.encode())
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    _hash_array(h, jax.tree_util.keystr(path), leaf)
  return h.hexdigest()


def fingerprint_examples(examples, max_len: int, tokenizer, style: str = 'bert'
                         ) -> str:
  """sha256 of the texts (both columns, in order), max_len, the encoding
  style and the tokenizer: a tokenizer object (its vocabulary and
  lowercasing, `data.tokenizer.fingerprint`) or a string naming it (a name or
  a vocabulary hash). Labels are left out: the teacher never sees them."""
  if isinstance(tokenizer, str):
    tok = tokenizer
  else:
    from jaxdistil.data import tokenizer as tokenizer_lib
    tok = tokenizer_lib.fingerprint(tokenizer)
  h = hashlib.sha256(f'jaxdistil examples v{FORMAT}\n'.encode())
  h.update(f'max_len={int(max_len)}\tstyle={style}\ttokenizer={tok}\t'
           f'n={len(examples)}\n'.encode())
  for name, column in (('a', examples.text_a), ('b', examples.text_b)):
    if column is None:
      h.update(f'{name}: none\n'.encode())
      continue
    h.update(f'{name}: {len(column)}\n'.encode())
    for text in column:
      raw = text.encode('utf-8')
      h.update(len(raw).to_bytes(8, 'little'))
      h.update(raw)
  return h.hexdigest()


def cache_path(cache_dir: str, task_name: str, split: str) -> str:
  return os.path.join(cache_dir, f'teacher_logits.{task_name}.{split}.npz')


def _read(path: str):
  """(key dict, logits) of a cache file; one line when it cannot be read."""
  try:
    with np.load(path, allow_pickle=False) as f:
      return json.loads(str(f['key'])), f['logits']
  except Exception as e:   # truncated, foreign or corrupt
    raise GlueError(f'{path}: cannot read the cached teacher logits '
                    f'({type(e).__name__}); remove the file to compute them '
                    f'again') from None


def _write_atomic(path: str, key: dict, logits: np.ndarray) -> None:
  """PATH written whole or not at all: a temporary file beside it, renamed."""
  fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.',
                             suffix='.tmp', dir=os.path.dirname(path))
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, logits=logits, key=np.asarray(json.dumps(key, sort_keys=True)))
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def load_or_compute(cache_dir: str, task_name: str, split: str, teacher_fp: str,
                    data_fp: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
  """The teacher's logits for (task, split): from `cache_dir` when its file was
  computed by this teacher over this data, else `compute()`, written
  atomically, then returned.

  A file of another teacher or other data is refused (one-line `GlueError`
  saying which differs) and left as it is. `compute` must return a finite
  array with a row per example; on any error nothing is written."""
  path = cache_path(cache_dir, task_name, split)
  key = {'format': FORMAT, 'task': task_name, 'split': split,
         'teacher': teacher_fp, 'data': data_fp}
  if os.path.exists(path):
    stored, logits = _read(path)
    differ = [what for what in ('teacher', 'data')
              if stored.get(what) != key[what]]
    if stored.get('format') != FORMAT:
      differ = ['format']
    if differ:
      which = {'teacher': 'by another teacher',
               'data': 'over other data (texts, max_len or tokenizer)',
               'format': 'in another cache format'}
      raise GlueError(
          f'{path}: the cached teacher logits for {task_name} {split} were '
          f'computed {" and ".join(which[d] for d in differ)}; remove '
          f'the file to recompute them, or use another workdir')
    return logits
  logits = np.asarray(compute())
  if logits.ndim == 0 or not np.all(np.isfinite(logits)):
    raise GlueError(f'the teacher\'s logits for {task_name} {split} are not a '
                    f'finite array per example (shape {logits.shape}); nothing '
                    f'was cached')
  os.makedirs(cache_dir, exist_ok=True)
  _write_atomic(path, key, logits)
  return logits
