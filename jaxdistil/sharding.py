"""Mesh, logical-axis rules, and the shardings of params, optimizer state and batch.

The mesh has three axes: `data` (pure data parallelism: params replicated), `fsdp`
(data parallelism whose params and optimizer state are sharded too) and `tensor`
(heads, MLP and vocabulary split across devices). The batch is split over
`('data', 'fsdp')`. Models name their parameter axes logically (`embed`, `vocab`,
...); the rules below map those names to mesh axes. A dimension that the mesh axis
does not divide evenly stays replicated rather than failing (BERT's vocabulary of
30,522 is not a multiple of 4, for example).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ('data', 'fsdp', 'tensor')
BATCH_AXES = ('data', 'fsdp')

# logical name -> mesh axis (or axes, or None for replicated)
DEFAULT_RULES = (
    ('batch', BATCH_AXES),
    ('vocab', 'tensor'),
    ('embed', 'fsdp'),
    ('heads', 'tensor'),
    ('kv', None),
    ('mlp', 'tensor'),
    ('mlp_head', 'tensor'),
    ('pos', None),
    ('type', None),
)


def mesh_shape(requested: dict, num_devices: int) -> tuple[int, int, int]:
  """Resolve {'data': d, 'fsdp': f, 'tensor': t} where one entry may be -1."""
  sizes = [int(requested.get(a, 1)) for a in MESH_AXES]
  fill = [i for i, s in enumerate(sizes) if s == -1]
  if len(fill) > 1:
    raise ValueError(f'mesh {dict(zip(MESH_AXES, sizes))}: at most one axis may '
                     f'be -1 (fill with the remaining devices)')
  if any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f'mesh {dict(zip(MESH_AXES, sizes))}: axis sizes must be '
                     f'positive, or -1 for one axis')
  known = math.prod(s for s in sizes if s != -1)
  if fill:
    if num_devices % known:
      raise ValueError(f'mesh {dict(zip(MESH_AXES, sizes))}: {num_devices} devices '
                       f'do not divide by {known}')
    sizes[fill[0]] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(f'mesh {dict(zip(MESH_AXES, sizes))} needs '
                     f'{math.prod(sizes)} devices but {num_devices} are present: '
                     f'set one axis to -1 to fill')
  return tuple(sizes)


def make_mesh(requested: dict, devices: Sequence[jax.Device] | None = None) -> Mesh:
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(requested, len(devices))
  if len(devices) == len(jax.devices()):
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3,
                         devices=devices)
  return Mesh(np.asarray(devices).reshape(shape), MESH_AXES,
              axis_types=(AxisType.Auto,) * 3)


def _spec_for(logical: P, shape: tuple, mesh: Mesh, rules) -> P:
  table = dict(rules)
  used: set = set()
  out = []
  for dim, name in zip(shape, tuple(logical) + (None,) * (len(shape) - len(logical))):
    axes = table.get(name) if name is not None else None
    if axes is None:
      out.append(None)
      continue
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
    size = math.prod(mesh.shape[a] for a in axes)
    if not axes or dim % size:
      out.append(None)
      continue
    used.update(axes)
    out.append(axes[0] if len(axes) == 1 else axes)
  return P(*out)


def param_shardings(logical_specs, abstract_params, mesh: Mesh,
                    rules=DEFAULT_RULES):
  """NamedShardings for a params tree from its logical PartitionSpecs."""
  return jax.tree.map(
      lambda spec, x: NamedSharding(mesh, _spec_for(spec, x.shape, mesh, rules)),
      logical_specs, abstract_params,
      is_leaf=lambda x: isinstance(x, P))


def _path_key(path) -> tuple:
  return tuple(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
               for k in path)


def shardings_like_params(abstract_tree, params_shardings, abstract_params,
                          mesh: Mesh):
  """Shardings for a tree that holds copies of the params (optimizer state).

  An optimizer-state leaf whose path ends with a parameter's path and has its
  shape gets that parameter's sharding (Adam's mu and nu); anything else (step
  counts, scalars) is replicated.
  """
  by_path = {}
  for (path, s), x in zip(jax.tree_util.tree_leaves_with_path(params_shardings),
                          jax.tree.leaves(abstract_params)):
    by_path[_path_key(path)] = (s, x.shape)
  replicated = NamedSharding(mesh, P())

  def pick(path, leaf):
    key = _path_key(path)
    for start in range(len(key)):
      hit = by_path.get(key[start:])
      if hit is not None and hit[1] == leaf.shape:
        return hit[0]
    return replicated

  return jax.tree_util.tree_map_with_path(pick, abstract_tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def batch_divisor(mesh: Mesh) -> int:
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


# Activations: the batch is split over data and fsdp; heads, MLP and vocabulary over
# tensor; the hidden (embed) axis of activations is never split.
ACTIVATION_RULES = (
    ('act_batch', BATCH_AXES),
    ('act_length', None),
    ('act_embed', None),
    ('act_heads', 'tensor'),
    ('act_mlp', 'tensor'),
    ('act_vocab', 'tensor'),
)

_ACTIVE: contextvars.ContextVar = contextvars.ContextVar('jaxdistil_mesh',
                                                         default=None)


@contextlib.contextmanager
def constraints(mesh: Mesh, rules=DEFAULT_RULES + ACTIVATION_RULES):
  """While tracing under this context, `constrain` pins arrays to the mesh."""
  token = _ACTIVE.set((mesh, rules))
  try:
    yield
  finally:
    _ACTIVE.reset(token)


def active():
  """(mesh, rules) of the enclosing `constraints`, or None outside one."""
  return _ACTIVE.get()


def spec(shape: tuple, *logical: str | None) -> P:
  """The PartitionSpec that `constrain` would pin an array of `shape` with
  these logical axes to under the active mesh (for shard_map's specs)."""
  mesh, rules = _ACTIVE.get()
  return _spec_for(P(*logical), shape, mesh, rules)


def constrain(x: jax.Array, *logical: str | None) -> jax.Array:
  """Sharding constraint by logical names; a no-op outside `constraints`."""
  active = _ACTIVE.get()
  if active is None:
    return x
  mesh, rules = active
  return jax.lax.with_sharding_constraint(
      x, NamedSharding(mesh, _spec_for(P(*logical), x.shape, mesh, rules)))


def global_batch(local: dict, mesh: Mesh) -> dict:
  """This host's rows of the batch -> global jax.Arrays split over the batch axes.

  Every host passes its own slice (the input pipeline reads disjoint shards); the
  global batch is their concatenation in process order.
  """
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}
