"""Orbax checkpoints of the train state and the data position.

A checkpoint holds the student's parameters, the optimizer state, the step and
the RNG (the `TrainState`), plus the input pipeline's position as JSON. The
teacher is an input and is never written. Saves are asynchronous; orbax writes
each step to a temporary directory and renames it when complete, so a crash
during a save leaves the previous checkpoints as they were.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, 'checkpoints')),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=True))


def save(mgr: ocp.CheckpointManager, step: int, state, position: dict) -> None:
  mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                         data=ocp.args.JsonSave(position)),
           force=True)


def restore(mgr: ocp.CheckpointManager, state, shardings):
  """(state, position, step) from the latest checkpoint, laid out with
  `shardings` (the current mesh's), or None when there is none."""
  step = mgr.latest_step()
  if step is None:
    return None
  abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      state, shardings)
  out = mgr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
  return out['state'], out['data'], step
