"""From a config to the objects a run needs: mesh, models, sharded state, the step.

The recipe follows the Flax examples: shapes first (`jax.eval_shape`), shardings
from the logical axis names, then initialisation jitted with `out_shardings` so that
every array is created where it lives, and the step jitted once with explicit
in/out shardings and the train state donated.

The teacher is an input, never part of the train state: it has no optimizer state,
gets no gradients, and is never written into checkpoints.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdistil import config_lib, optim, sharding
from jaxdistil.config_lib import ConfigError
from jaxdistil.models import bert, student_init
from jaxdistil.step import (StepConfig, TrainState, create_state, make_eval_step,
                            make_train_step)


@dataclasses.dataclass
class Run:
  config: Any                         # the config as built (a loaded teacher's shape)
  mesh: Mesh
  step_config: StepConfig
  teacher_params: Any                 # None for teacher-free MLM training
  teacher_shardings: Any
  # The train state's shapes, dtypes and shardings (jax.ShapeDtypeStruct), for
  # a restore; `init_state()` builds the fresh state (the student copied from
  # the teacher, the optimizer initialised) only when there is none to restore.
  abstract_state: TrainState
  init_state: Callable
  state_shardings: TrainState
  batch_sharding: NamedSharding
  frozen: Any
  tx: Any                             # the optax transformation
  lr_schedule: Callable
  train_step: Callable                # jitted: (state, teacher, batch) -> (state, m)
  # jitted like train_step, under the same mesh and rules:
  # (params, eval teacher or None, batch) -> summed eval outputs
  eval_step: Callable = None
  teacher_tokenizer: str | None = None   # the loaded teacher's tokenizer folder
  # The teacher that held-out evaluation compares with (KL, its accuracy): the
  # step's teacher, or one loaded only to initialise the student when
  # `config.eval_teacher` keeps it (an MLM-only baseline); else None.
  eval_teacher_params: Any = None
  _state: Any = None

  @property
  def state(self) -> TrainState:
    """A fresh train state, built on first use (then the same object)."""
    if self._state is None:
      self._state = self.init_state()
    return self._state

def resolve_mesh(config, devices=None, validate: bool = True) -> Mesh:
  devices = list(jax.devices() if devices is None else devices)
  try:
    shape = sharding.mesh_shape(config.mesh.to_dict(), len(devices))
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if validate:
    config_lib.validate(config, len(devices), shape)
  return sharding.make_mesh(config.mesh.to_dict(), devices)


def _sharded_params(cfg: bert.BertConfig, mesh: Mesh):
  abstract = jax.eval_shape(lambda k: bert.init(cfg, k), jax.random.key(0))
  return abstract, sharding.param_shardings(bert.logical_axes(cfg), abstract, mesh)


TEACHER_FIELDS = ('vocab_size', 'hidden_size', 'num_layers', 'num_heads',
                  'intermediate_size', 'max_position_embeddings', 'type_vocab_size',
                  'layer_norm_eps', 'hidden_act', 'tie_word_embeddings', 'family',
                  'pad_token_id')


def load_teacher(config, mesh: Mesh):
  """The teacher named by `config.teacher` (an HF directory or hub id, a jaxdistil
  model directory, or a train workdir), read straight onto its shardings.

  The teacher's shape is the checkpoint's: `config.model.teacher` is set from it
  (a line says which fields changed), so the student, the data checks and the
  saved config all follow the model actually loaded.
  """
  from jaxdistil import convert
  name = config.teacher
  def shardings_for(cfg):
    cfg = cfg.replace(dtype=config.dtype, hidden_dropout=0.0, attention_dropout=0.0)
    return _sharded_params(cfg, mesh)[1]
  from jaxdistil.convert.hf_in import MissingHeadError
  try:
    loaded = convert.load_model(name, shardings_for=shardings_for)
  except MissingHeadError:
    raise ConfigError(
        f'teacher={name!r} has no masked-LM head (a bare encoder such as '
        f'BertModel), so it has no outputs to distil: give it one with '
        f'python -m jaxdistil.convert import --hf={name} --output=DIR '
        f'--init_missing_head, train that head (python -m jaxdistil.replicate '
        f'does both), then pass --config.teacher=DIR') from None
  except convert.ConvertError as e:
    raise ConfigError(f'teacher={name!r}: {e}') from None
  changed = []
  for field in TEACHER_FIELDS:
    value = getattr(loaded.config, field)
    if config.model.teacher[field] != value:
      changed.append(f'{field}={value}')
      config.model.teacher[field] = value
  if changed and jax.process_index() == 0:
    print(f'jaxdistil: teacher {name}: model.teacher set from the checkpoint: '
          f'{", ".join(changed)}')
  return loaded


def _under_mesh(fn: Callable, mesh: Mesh) -> Callable:
  """`fn` traced with the mesh's logical-axis rules in force (its sharding
  constraints resolve against `mesh`)."""
  def traced(*args):
    with sharding.constraints(mesh):
      return fn(*args)
  return traced


def build(config, devices=None, teacher_params=None) -> Run:
  """Validate the config, then build everything up to the compiled-on-call step.

  `teacher_params` (a params tree for `config.model.teacher`) overrides
  `config.teacher`; otherwise `config.teacher` is loaded (`load_teacher`) or,
  when it is 'random', initialised randomly. `config` is not changed: the
  config as built (with a loaded teacher's shape) is `Run.config`. Nothing of
  the student or the optimizer is computed here: `Run.abstract_state` is their
  shapes, and `Run.init_state()` (or `Run.state`) computes them.
  """
  config = config.copy_and_resolve_references()
  needs_teacher = (config_lib.loss_config(config).needs_teacher
                   or config.student_init.source == 'teacher')
  loads_teacher = (teacher_params is None and needs_teacher
                   and config.teacher != 'random')
  # A loaded teacher brings its own shape (layers, vocabulary), so the checks
  # that depend on it wait until it is read.
  mesh = resolve_mesh(config, devices, validate=not loads_teacher)
  teacher_tokenizer = None
  if loads_teacher:
    loaded = load_teacher(config, mesh)
    teacher_params, teacher_tokenizer = loaded.params, loaded.tokenizer_dir
    config_lib.validate(config, len(mesh.devices.flat), tuple(mesh.devices.shape))
  teacher_cfg = config_lib.teacher_config(config)
  student_cfg = config_lib.student_config(config)
  loss_cfg = config_lib.loss_config(config)
  step_cfg = StepConfig(student=student_cfg, teacher=teacher_cfg, loss=loss_cfg,
                        micro_batches=config.micro_batches,
                        skip_nonfinite=config.nonfinite == 'skip')
  root = jax.random.key(config.seed)
  replicated = NamedSharding(mesh, P())

  # Teacher: loaded above, given, or random weights.
  _, teacher_shardings = _sharded_params(teacher_cfg, mesh)
  if teacher_params is None and needs_teacher:
    teacher_params = jax.jit(bert.init, static_argnums=0,
                             out_shardings=teacher_shardings)(
                                 teacher_cfg, jax.random.fold_in(root, 0))
  elif teacher_params is not None:
    teacher_params = jax.device_put(teacher_params, teacher_shardings)

  # Student: copied from the teacher's layers, or random (in init_state).
  abstract_student, student_shardings = _sharded_params(student_cfg, mesh)
  if config.student_init.source == 'teacher':
    layer_map = config_lib.layer_map(config)
    init_params = jax.jit(
        lambda t: student_init.init_from_teacher(
            t, teacher_cfg, student_cfg, layer_map,
            config.student_init.fold_token_type),
        out_shardings=student_shardings)
    student_source = teacher_params
  else:
    def random_student(key):
      p = bert.init(student_cfg, key)
      if config.student_init.random_positions == 'sinusoidal':
        p = student_init.with_sinusoidal_positions(p, student_cfg)
      return p
    init_params = jax.jit(random_student, out_shardings=student_shardings)
    student_source = jax.random.fold_in(root, 1)
  eval_teacher_params = teacher_params if config.eval_teacher else None
  eval_teacher_shardings = (teacher_shardings if eval_teacher_params is not None
                            else None)
  if not loss_cfg.needs_teacher:
    teacher_params, teacher_shardings = None, None

  # Optimizer and train state, sharded like the params (FSDP shards Adam's moments).
  frozen = student_init.frozen_mask(abstract_student,
                                    config.student_init.freeze_position_embeddings)
  optim_cfg = config_lib.optim_config(config)
  try:
    tx = optim.make(optim_cfg, config.total_steps, frozen)
  except ValueError as e:       # lr_mults that match nothing
    raise ConfigError(str(e)) from None
  lr_schedule = optim.schedule(optim_cfg, config.total_steps)
  abstract_opt = jax.eval_shape(tx.init, abstract_student)
  state_shardings = TrainState(
      step=replicated, params=student_shardings,
      opt_state=sharding.shardings_like_params(abstract_opt, student_shardings,
                                               abstract_student, mesh),
      rng=replicated)
  make_state = jax.jit(lambda p: create_state(p, tx, config.seed),
                       out_shardings=state_shardings, donate_argnums=0)

  def init_state() -> TrainState:
    return make_state(init_params(student_source))

  abstract_state = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      jax.eval_shape(init_state), state_shardings)

  batch_sharding = sharding.batch_sharding(mesh)
  step_fn = make_train_step(step_cfg, tx, lr_schedule, frozen,
                            micro_sharding=NamedSharding(mesh,
                                                         P(None, sharding.BATCH_AXES)))

  train_step = jax.jit(_under_mesh(step_fn, mesh),
                       in_shardings=(state_shardings, teacher_shardings,
                                     batch_sharding),
                       out_shardings=(state_shardings, replicated),
                       donate_argnums=(0,))
  eval_step = jax.jit(_under_mesh(make_eval_step(step_cfg), mesh),
                      in_shardings=(student_shardings, eval_teacher_shardings,
                                    batch_sharding),
                      out_shardings=replicated)
  return Run(config=config, mesh=mesh, step_config=step_cfg,
             teacher_params=teacher_params, teacher_shardings=teacher_shardings,
             abstract_state=abstract_state, init_state=init_state,
             state_shardings=state_shardings,
             batch_sharding=batch_sharding, frozen=frozen, tx=tx,
             lr_schedule=lr_schedule, train_step=train_step,
             teacher_tokenizer=teacher_tokenizer,
             eval_teacher_params=eval_teacher_params, eval_step=eval_step)
