"""Orbax checkpoints of the train state and the data position.

A checkpoint holds the student's parameters, the optimizer state, the step and
the RNG (the `TrainState`), plus the input pipeline's position as JSON. The
teacher is an input and is never written. Saves are asynchronous; orbax writes
each step to a temporary directory and renames it when complete, so a crash
during a save leaves the previous checkpoints as they were.

The workdir may be a URL (gs://BUCKET/PATH): orbax writes it itself, and the
rest goes through `jaxdistil.fs`.
"""

from __future__ import annotations

import os
import sys

import jax
import orbax.checkpoint as ocp

from jaxdistil import fs
from jaxdistil import workdir as layout


class CheckpointError(RuntimeError):
  """No usable checkpoint, or one of another model; one line says which."""


def directory(workdir: str) -> str:
  return layout.checkpoints(workdir)


def manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      directory(workdir),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=True))


def save(mgr: ocp.CheckpointManager, step: int, state, position: dict) -> None:
  # A copy: the save is asynchronous and the loop keeps advancing the live
  # position dict, which must not leak a later position into this checkpoint.
  mgr.save(step, args=ocp.args.Composite(**{
      layout.STATE: ocp.args.StandardSave(state),
      layout.DATA: ocp.args.JsonSave(dict(position))}),
           force=True)


def save_failure(mgr: ocp.CheckpointManager, step: int, error: BaseException) -> str:
  """One line for a save that failed (a full disk, a lost bucket, ...): what
  failed, and which earlier checkpoints are intact."""
  import errno
  detail = (str(error).splitlines() or [''])[0][:200]
  full = (getattr(error, 'errno', None) == errno.ENOSPC
          or 'No space left' in str(error))
  try:
    mgr.wait_until_finished()       # earlier saves still being written
  except Exception:
    pass
  try:
    mgr.reload()
    intact = [s for s in mgr.all_steps() if s != step]
  except Exception:  # the directory itself may be unreadable now
    intact = []
  kept = (f'checkpoints {intact} in {mgr.directory} are intact' if intact
          else f'no earlier checkpoint in {mgr.directory}')
  return (f'saving checkpoint {step} failed ({type(error).__name__}: {detail})'
          f'{": the disk is full" if full else ""}; {kept}; '
          f'{"free space" if full else "fix the cause"} and rerun the same '
          f'command to resume')


def _shape_mismatch(step_dir: str, params) -> str | None:
  """The first parameter whose saved (global) shape differs from `params`, read
  from the checkpoint's metadata; None when they agree or it cannot be read."""
  try:
    saved = ocp.PyTreeCheckpointer().metadata(
        fs.join(step_dir, layout.STATE)).item_metadata.tree['params']
  except Exception:  # unreadable: restore() decides what to do with it
    return None
  key = lambda path: tuple(str(getattr(k, 'key', k)) for k in path)
  shapes = {key(path): tuple(m.shape) for path, m in
            jax.tree_util.tree_leaves_with_path(saved) if hasattr(m, 'shape')}
  ours = {key(path): tuple(x.shape)
          for path, x in jax.tree_util.tree_leaves_with_path(params)}
  for path, shape in ours.items():
    if path not in shapes:
      return f'it has no parameter {"/".join(path)}'
    if shapes[path] != shape:
      return (f'parameter {"/".join(path)} is {shapes[path]} there but '
              f'{shape} in this config')
  extra = sorted(set(shapes) - set(ours))
  if extra:
    return f'it has parameter {"/".join(extra[0])} that this model lacks'
  return None


def move_aside(step_dir: str, aside: str) -> None:
  """Moves the directory `step_dir` to `aside` (whose parent may not exist yet).

  Locally one rename. A remote store cannot rename a directory (GCS has no
  directories, and gfile.rename moves single files there): the files are copied
  to `aside`, replacing an older copy there, then deleted.
  """
  fs.makedirs(fs.dirname(aside))
  if not fs.is_remote(step_dir) and not fs.is_remote(aside):
    os.replace(step_dir, aside)
    return
  if fs.exists(aside):
    fs.rmtree(aside)
  fs.copy_tree(step_dir, aside)
  fs.rmtree(step_dir)


def restore(mgr: ocp.CheckpointManager, state, shardings):
  """(state, position, step) from the latest readable checkpoint, laid out with
  `shardings` (the current mesh's), or None when there is none.

  A checkpoint that cannot be read (a crash or a full disk during a save
  outside orbax's atomic rename, a damaged file) is skipped with a warning for
  the one before it. Checkpoints of another model shape are refused.
  """
  abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      state, shardings)
  steps = sorted(mgr.all_steps(), reverse=True)
  for step in steps:
    step_dir = fs.join(str(mgr.directory), str(step))
    mismatch = _shape_mismatch(step_dir, state.params)
    if mismatch:
      raise CheckpointError(
          f'{mgr.directory} holds checkpoints of another model ({mismatch}): use '
          f'a new --workdir, or the config that wrote them')
    try:
      out = mgr.restore(step, args=ocp.args.Composite(
          **{layout.STATE: ocp.args.StandardRestore(abstract),
             layout.DATA: ocp.args.JsonRestore()}))
    except Exception as e:  # damaged: fall back to the previous checkpoint
      # Moved aside, not deleted: the run will save this step again, and the
      # damaged files stay for whoever wants to look at them.
      aside = fs.join(fs.dirname(str(mgr.directory)), layout.DAMAGED,
                      str(step))
      move_aside(step_dir, aside)
      mgr.reload()
      print(f'jaxdistil: warning: checkpoint {step_dir} cannot be read '
            f'({type(e).__name__}); moved to {aside}, trying the previous one',
            file=sys.stderr)
      continue
    return out[layout.STATE], out[layout.DATA], step
  if steps:
    raise CheckpointError(f'none of the checkpoints in {mgr.directory} '
                          f'({steps}) can be read: move them aside to start over')
  return None
