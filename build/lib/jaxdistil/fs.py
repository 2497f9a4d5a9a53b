"""Files at local paths and at remote URLs (gs://, anything `tf.io.gfile` reads).

`train` writes its workdir through this module so that `--workdir=gs://BUCKET/PATH`
works as well as a local folder. A local path goes through `os` and `shutil`
exactly as before; a URL (`scheme://...`) goes through `tf.io.gfile`, imported
on first use only (importing TensorFlow takes seconds). Errors from a remote
filesystem are raised as the `OSError` subclasses that callers already catch
(`FileNotFoundError`, `FileExistsError`, `PermissionError`, else `OSError`).

What a remote store cannot do: append to a file (a GCS object is written whole;
see `metrics_writer.Writer`), or rename a directory (`gfile.rename` moves single files on
GCS; `copy_tree` then `rmtree` instead). A single object write is atomic there:
readers see the old object or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import re
import shutil
import tempfile

_URL = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


def is_remote(path) -> bool:
  """Whether `path` is a URL (gs://b/p, ram://x, ...), not a local path."""
  return bool(_URL.match(os.fspath(path)))


def _gfile():
  import tensorflow as tf   # slow: only when a URL is used
  return tf.io.gfile


_TF_ERRORS = {'NotFoundError': (FileNotFoundError, errno.ENOENT),
              'AlreadyExistsError': (FileExistsError, errno.EEXIST),
              'PermissionDeniedError': (PermissionError, errno.EACCES),
              'UnauthenticatedError': (PermissionError, errno.EACCES)}


@contextlib.contextmanager
def _remote(path: str):
  """Runs gfile calls on `path`, turning TensorFlow's errors into OSError."""
  import tensorflow as tf
  try:
    yield _gfile()
  except tf.errors.OpError as e:
    cls, code = _TF_ERRORS.get(type(e).__name__, (OSError, errno.EIO))
    message = e.message or os.strerror(code)
    if cls is OSError:
      message = f'{type(e).__name__}: {message}'
    raise cls(code, message, path) from None


def _clear_for_ram(gfile, path: str) -> None:
  """TensorFlow's in-memory filesystem (ram://, for tests) appends when it
  opens an existing file for writing, where GCS and local files start empty:
  there the old file is deleted first. Other filesystems write in place."""
  if path.startswith('ram://') and gfile.exists(path):
    gfile.remove(path)


def join(path: str, *parts: str) -> str:
  """os.path.join for a local path; '/'-joined for a URL."""
  if is_remote(path):
    return posixpath.join(path, *parts)
  return os.path.join(path, *parts)


def dirname(path: str) -> str:
  if is_remote(path):
    return posixpath.dirname(path.rstrip('/'))
  return os.path.dirname(path)


def exists(path: str) -> bool:
  if not is_remote(path):
    return os.path.exists(path)
  with _remote(path) as gfile:
    return gfile.exists(path)


def isdir(path: str) -> bool:
  if not is_remote(path):
    return os.path.isdir(path)
  with _remote(path) as gfile:
    return gfile.isdir(path)


def isfile(path: str) -> bool:
  if not is_remote(path):
    return os.path.isfile(path)
  with _remote(path) as gfile:
    return gfile.exists(path) and not gfile.isdir(path)


def size(path: str) -> int:
  """The file's length in bytes."""
  if not is_remote(path):
    return os.path.getsize(path)
  with _remote(path) as gfile:
    return gfile.stat(path).length


def makedirs(path: str) -> None:
  """Creates `path` and its parents; an existing directory is fine."""
  if not is_remote(path):
    os.makedirs(path, exist_ok=True)
    return
  with _remote(path) as gfile:
    gfile.makedirs(path)


def listdir(path: str) -> list[str]:
  """The names in a directory (a remote one's subdirectories without the
  trailing '/' that GCS listings give them)."""
  if not is_remote(path):
    return os.listdir(path)
  with _remote(path) as gfile:
    names = [name.rstrip('/') for name in gfile.listdir(path)]
  return [name for name in names if name]


def read_text(path: str) -> str:
  if not is_remote(path):
    with open(path, encoding='utf-8') as f:
      return f.read()
  with _remote(path) as gfile, gfile.GFile(path, 'r') as f:
    return f.read()


def write_text(path: str, text: str) -> None:
  """Writes `path` in place (a reader may see it half written, locally)."""
  if not is_remote(path):
    with open(path, 'w', encoding='utf-8') as f:
      f.write(text)
    return
  with _remote(path) as gfile:
    _clear_for_ram(gfile, path)
    with gfile.GFile(path, 'w') as f:
      f.write(text)


def write_text_atomic(path: str, text: str) -> None:
  """Writes `path` so that a reader sees the old text or the new, never half:
  locally PATH.tmp then os.replace; remotely one object write, atomic already."""
  if not is_remote(path):
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
      f.write(text)
    os.replace(tmp, path)
    return
  write_text(path, text)


def copy_file(src: str, dst: str) -> None:
  """Copies one file, either side local or remote, replacing `dst`."""
  if not is_remote(src) and not is_remote(dst):
    shutil.copyfile(src, dst)
    return
  with _remote(f'{src} -> {dst}') as gfile:
    if dst.startswith('ram://') and gfile.exists(src):   # a missing src keeps dst
      _clear_for_ram(gfile, dst)
    gfile.copy(src, dst, overwrite=True)


def rename(src: str, dst: str) -> None:
  """Moves a file, replacing `dst` (on GCS: files only, not directories)."""
  if not is_remote(src) and not is_remote(dst):
    os.replace(src, dst)
    return
  with _remote(f'{src} -> {dst}') as gfile:
    gfile.rename(src, dst, overwrite=True)


def remove(path: str) -> None:
  if not is_remote(path):
    os.remove(path)
    return
  with _remote(path) as gfile:
    gfile.remove(path)


def rmtree(path: str) -> None:
  if not is_remote(path):
    shutil.rmtree(path)
    return
  with _remote(path) as gfile:
    gfile.rmtree(path)


def files_under(root: str) -> list[str]:
  """Every file below `root`, as '/'-separated paths relative to it, sorted."""
  out = []
  for name in listdir(root):
    path = join(root, name)
    if isdir(path):
      out.extend(f'{name}/{rel}' for rel in files_under(path))
    else:
      out.append(name)
  return sorted(out)


def _under(root: str, rel: str) -> str:
  return join(root, *rel.split('/'))


def copy_tree(src: str, dst: str) -> list[str]:
  """Copies every file below `src` to the same place below `dst` (either side
  local or remote), replacing files of the same name; returns their paths
  relative to `src`."""
  rels = files_under(src)
  makedirs(dst)
  for rel in rels:
    target = _under(dst, rel)
    if '/' in rel:
      makedirs(dirname(target))
    copy_file(_under(src, rel), target)
  return rels


def copy_tree_up(local_dir: str, remote_dir: str) -> list[str]:
  """Makes `remote_dir` hold what `local_dir` holds: uploads every file (each
  replacing its old copy), then deletes the files there that `local_dir` lacks.
  Not atomic as a whole: a reader during the upload may see old and new files
  together. Returns the uploaded paths, relative to `local_dir`."""
  rels = copy_tree(local_dir, remote_dir)
  keep = set(rels)
  for rel in files_under(remote_dir):
    if rel not in keep:
      remove(_under(remote_dir, rel))
  return rels


def local_cache(url: str) -> str:
  """A local folder for files kept on this machine on behalf of `url` (the same
  folder for the same URL on every run on this machine; not created)."""
  url = url.rstrip('/')
  name = re.sub(r'[^A-Za-z0-9._-]+', '_', url).strip('_')[-100:]
  digest = hashlib.sha1(url.encode()).hexdigest()[:8]
  return os.path.join(tempfile.gettempdir(), 'jaxdistil', f'{name}-{digest}')


class ExistsError(FileExistsError):
  """A non-empty output that would be overwritten; the line says what to do."""


def refuse_nonempty(path: str, what: str = '--output',
                    error: type = ExistsError) -> None:
  """One line (`error`) when local `path` is a file or a non-empty folder."""
  if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
    raise error(f'{path} already exists and is not empty: choose a new '
                      f'{what} (nothing was written)')


@contextlib.contextmanager
def atomic_dir(output: str, overwrite: bool = False, error: type = ExistsError):
  """Yields a fresh local folder beside `output`; when the block ends without
  an error it becomes `output` (a rename), else it is deleted. A non-empty
  `output` is refused first unless `overwrite`, and then replaced only once
  the new folder is complete, so a crash leaves the old folder or the new one,
  never half of either."""
  output = os.path.abspath(output)
  if not overwrite:
    refuse_nonempty(output, error=error)
  parent = os.path.dirname(output)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.' + os.path.basename(output) + '.', dir=parent)
  try:
    yield tmp
    if os.path.exists(output):
      old = tempfile.mkdtemp(prefix='.' + os.path.basename(output) + '.old.',
                             dir=parent)
      os.rmdir(old)
      os.replace(output, old)
      os.replace(tmp, output)
      if os.path.isdir(old):
        shutil.rmtree(old, ignore_errors=True)
      else:
        os.remove(old)
    else:
      os.replace(tmp, output)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
