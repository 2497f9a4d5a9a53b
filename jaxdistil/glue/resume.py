"""Fine-tuning that survives a kill: per-seed checkpoints in a run folder.

    RUN/run.json             what the run is (task, settings, model, data): a
                             folder of another run is refused, never mixed in
    RUN/seed_N/ckpt.npz      params, optimizer state and step, every
                             `checkpoint_every` steps (atomic: written beside,
                             then renamed)
    RUN/seed_N/final.npz     the fine-tuned params, once the seed is done
    RUN/seed_N/result.json   its dev result

A rerun of the same command skips the seeds that are done and continues a
cut-off one from its last checkpoint. The batch plan is a function of the seed
and dropout is keyed on (seed, step), so the continued run computes exactly
what the uninterrupted one would have: the same final params, bit for bit,
and so the same saved model.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from jaxdistil import fs
from jaxdistil.glue.tasks import GlueError

RUN_FILE = 'run.json'


def _save_tree(path: str, tree, step: int | None = None) -> None:
  leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]
  arrays = {f'leaf_{i:05d}': x for i, x in enumerate(leaves)}
  if step is not None:
    arrays['step'] = np.asarray(step, np.int64)
  tmp = path + '.tmp.npz'
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def _load_tree(path: str, template):
  """The tree saved at `path`, in `template`'s structure (and its step)."""
  leaves, treedef = jax.tree_util.tree_flatten(template)
  with np.load(path) as z:
    got = [z[f'leaf_{i:05d}'] for i in range(len(leaves))]
    step = int(z['step']) if 'step' in z.files else None
  for want, have in zip(leaves, got):
    if tuple(np.shape(want)) != have.shape:
      raise GlueError(f'{path} holds arrays of other shapes than this run\'s '
                      f'model: remove the run folder to start over')
  return jax.tree_util.tree_unflatten(treedef, got), step


class RunFolder:
  """One task's run folder (see the module doc); `None` folder: no resume."""

  def __init__(self, folder: str, identity: dict):
    self.folder = folder
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, RUN_FILE)
    want = json.loads(json.dumps(identity, sort_keys=True, default=str))
    if os.path.exists(path):
      with open(path) as f:
        have = json.load(f)
      differ = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
      if differ:
        raise GlueError(f'{folder} belongs to another run (its {", ".join(differ)} '
                        f'differ): give another --workdir, or remove it to start '
                        f'over')
    else:
      fs.write_text_atomic(path, json.dumps(want, indent=2, sort_keys=True) + '\n')

  def _seed(self, seed: int, name: str) -> str:
    return os.path.join(self.folder, f'seed_{seed}', name)

  def done(self, seed: int, template) -> tuple[dict, dict] | None:
    """(result, params) of a finished seed, else None."""
    result = self._seed(seed, 'result.json')
    if not os.path.exists(result):
      return None
    with open(result) as f:
      out = json.load(f)
    params, _ = _load_tree(self._seed(seed, 'final.npz'), template)
    return out, params

  def checkpoint(self, seed: int, template_params, template_opt):
    """(params, opt_state, step) of a cut-off seed's last checkpoint, or None."""
    path = self._seed(seed, 'ckpt.npz')
    if not os.path.exists(path):
      return None
    (params, opt_state), step = _load_tree(path, (template_params, template_opt))
    return params, opt_state, step

  def save_checkpoint(self, seed: int, params, opt_state, step: int) -> None:
    os.makedirs(os.path.dirname(self._seed(seed, '')), exist_ok=True)
    _save_tree(self._seed(seed, 'ckpt.npz'), (params, opt_state), step)

  def finish(self, seed: int, params, result: dict) -> None:
    os.makedirs(os.path.dirname(self._seed(seed, '')), exist_ok=True)
    _save_tree(self._seed(seed, 'final.npz'), params)
    fs.write_text_atomic(self._seed(seed, 'result.json'),
                         json.dumps(result, indent=2, default=float) + '\n')
    ckpt = self._seed(seed, 'ckpt.npz')
    if os.path.exists(ckpt):
      os.remove(ckpt)
