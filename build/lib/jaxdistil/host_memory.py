"""Keep freed host memory for reuse on the CPU backend (glibc only).

XLA's CPU executables allocate their temporary buffer (gigabytes for the base
config) on every execution, from the runtime's worker threads. glibc serves large
requests from those threads with fresh `mmap`s and returns them with `munmap`, so
every step page-faults the whole buffer in again: on the base config at sequence
128 that was about 1M page faults and 3.6 s of kernel time per 10 s step.

One malloc arena, no mmap for large blocks and no trimming make glibc keep the
memory and hand it back on the next step (0 faults, about 25% faster). glibc
fixes the arena limit when a second thread first allocates, so the entry points
call `keep_freed_memory()` at the top of their module, before jax is imported.

It is applied only on hosts with no accelerator: TPU and GPU buffers come from
XLA's own allocator, and there a single arena would only make the input
pipeline's threads queue on one lock. Nothing happens on a non-glibc C library.
JAXDISTIL_KEEP_HOST_MEMORY=0 turns it off, =1 forces it on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_applied: bool | None = None


def keep_freed_memory() -> bool:
  """Apply the glibc malloc settings once; True if they are in effect."""
  global _applied
  if _applied is not None:
    return _applied
  _applied = False
  setting = os.environ.get('JAXDISTIL_KEEP_HOST_MEMORY', '')
  if setting == '0' or (setting != '1' and has_accelerator()):
    return False
  name = ctypes.util.find_library('c')
  if not name:
    return False
  try:
    libc = ctypes.CDLL(name)
    if not hasattr(libc, 'gnu_get_libc_version'):
      return False
    ok = (libc.mallopt(_M_ARENA_MAX, 1) == 1
          and libc.mallopt(_M_MMAP_MAX, 0) == 1
          # mallopt takes an int that glibc converts to size_t: -1 is "never
          # trim". The largest positive int (2 GiB) is smaller than the
          # base config's 3 GiB buffer, which would then still be trimmed.
          and libc.mallopt(_M_TRIM_THRESHOLD, -1) == 1)
  except (OSError, AttributeError):
    return False
  _applied = ok
  return ok


def has_accelerator() -> bool:
  """Whether this host will run JAX on a TPU or GPU (checked without jax)."""
  platforms = os.environ.get('JAX_PLATFORMS', '')
  if platforms:
    return any(p not in ('cpu', '') for p in platforms.split(','))
  return bool(glob.glob('/dev/accel*') or glob.glob('/dev/vfio/[0-9]*')
              or glob.glob('/dev/nvidia[0-9]*'))


def applied() -> bool:
  """Whether `keep_freed_memory` has put the settings in effect."""
  return bool(_applied)
