"""The fine-tuning model as pure functions (encoder + head forward, the loss,
one AdamW step, prediction), placed on a data-parallel mesh and jitted
(`compile_steps`); the train step run over a batch plan (`fit`), and the
dev-set predictions and metrics (`evaluate`, which `glue.scoring` runs too).

The loss is the task's (cross-entropy, or MSE for STS-B), or with a teacher's
logits in the batch the task-distillation loss (`glue.kd.task_loss`).
"""

from __future__ import annotations

import functools
import time
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxdistil import losses, optim, sharding
from jaxdistil.glue import data as glue_data
from jaxdistil.glue import heads, kd
from jaxdistil.glue import metrics as glue_metrics
from jaxdistil.glue.batching import (Batch, bucket_lengths, eval_plan,
                                     padded_rows, train_plan)
from jaxdistil.glue.config import FinetuneConfig
from jaxdistil.glue.tasks import GlueError, Task
from jaxdistil.models import bert


# ----------------------------------------------------------------------------
# The model: encoder + head, as pure functions

# Where an online teacher travels in `rest`: {'params': {'encoder', 'head'},
# 'rest': its untrained MLM head}, replicated and never trained.
TEACHER = 'teacher'


def forward(cfg: bert.BertConfig, params: dict, rest: dict, batch: dict,
            head_dropout: float, rng=None):
  rest = {k: v for k, v in rest.items() if k != TEACHER}
  enc_rng = head_rng = None
  if rng is not None:
    enc_rng, head_rng = jax.random.split(rng)
  out = bert.apply(cfg, {**params['encoder'], **rest}, batch['input_ids'],
                   batch['attention_mask'], batch['token_type_ids'],
                   dropout_rng=enc_rng)
  return heads.head_apply(params['head'], out.hidden_states[-1][:, 0], head_dropout,
                    head_rng)


def loss_fn(logits, labels, weights, regression: bool):
  """Mean over rows of weight > 0 (`kd.weighted_mean`): the squared error for
  regression, else the cross-entropy (`losses.cross_entropy`)."""
  if regression:
    per_row = jnp.square(logits[:, 0] - labels.astype(jnp.float32))
  else:
    per_row = losses.cross_entropy(logits, labels)
  return kd.weighted_mean(per_row, weights)


def train_step(cfg, tx, regression, head_dropout, params, opt_state, rest,
               batch, key, step, distill: tuple | None = None):
  """One AdamW step; pure (dropout keyed on (key, step)). With `distill`
  (T, alpha, beta), the loss is `kd.task_loss` against the batch's
  'teacher_logits', the labels weighted by its 'label_weights'. With
  (T, alpha, beta, teacher_cfg), the teacher in `rest` computes those logits
  in the step itself (online), on the batch's own tokens."""
  rng = jax.random.fold_in(key, step)
  if distill is not None and len(distill) == 4:
    t = rest[TEACHER]
    batch = dict(batch, teacher_logits=jax.lax.stop_gradient(
        forward(distill[3], t['params'], t['rest'], batch, 0.0)))
    distill = distill[:3]

  def loss_of(p):
    logits = forward(cfg, p, rest, batch, head_dropout, rng)
    if distill is None:
      return loss_fn(logits, batch['labels'], batch['weights'], regression)
    temperature, alpha, beta = distill
    total, _ = kd.task_loss(logits, batch['teacher_logits'], batch['labels'],
                            batch['weights'], batch['label_weights'], regression,
                            temperature=temperature, alpha=alpha, beta=beta)
    return total

  loss, grads = jax.value_and_grad(loss_of)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


def predict_step(cfg, params, rest, batch):
  return forward(cfg, params, rest, batch, 0.0, None)


# ----------------------------------------------------------------------------
# Sharding and batches

def mesh_of(cfg: FinetuneConfig):
  """The device mesh `cfg.mesh` names."""
  return sharding.make_mesh(dict(cfg.mesh))


def eval_batch_size(cfg: FinetuneConfig, mesh) -> int:
  """`cfg.eval_batch_size` rounded up to a multiple of the data-parallel
  devices of `mesh`."""
  divisor = sharding.batch_divisor(mesh)
  return -(-cfg.eval_batch_size // divisor) * divisor


def param_shardings(bert_cfg: bert.BertConfig, params: dict, mesh) -> dict:
  """Encoder params by their logical axes (replicated on a pure data mesh),
  head replicated. An encoder tree the logical table does not describe (an
  unexpected checkpoint layout) is replicated."""
  replicated = NamedSharding(mesh, P())
  is_spec = lambda x: isinstance(x, P)
  logical = bert.logical_axes(bert_cfg)
  logical = {k: logical[k] for k in params['encoder'] if k in logical}
  same = (jax.tree.structure(logical, is_leaf=is_spec) ==
          jax.tree.structure(params['encoder']))
  encoder = (sharding.param_shardings(logical, params['encoder'], mesh) if same
             else jax.tree.map(lambda _: replicated, params['encoder']))
  return {'encoder': encoder,
          'head': jax.tree.map(lambda _: replicated, params['head'])}


def _host_rows(n: int) -> slice:
  """This process's rows of a global batch of n (rows go in process order)."""
  per = n // jax.process_count()
  return slice(per * jax.process_index(), per * (jax.process_index() + 1))


def _gather(x) -> np.ndarray:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def device_batch(arrays: dict, batch: Batch, batch_size: int, mesh) -> dict:
  """The rows of `batch` (padded to `batch_size` with zero-weight rows, the
  tokens cut to its length) as a global batch on `mesh`, from this process's
  share of them."""
  host = padded_rows(arrays, batch.index, batch_size, batch.length)
  host = {k: v[_host_rows(batch_size)] for k, v in host.items()}
  return sharding.global_batch(host, mesh)


def predict_logits(predict, params, rest, arrays: dict, batch_size: int, mesh,
                   buckets: Sequence[int] | None = None) -> np.ndarray:
  """[N, num_outputs] logits of every row of `arrays`, in their order, from
  the batches of `eval_plan` (buckets None: everything at full length)."""
  lengths = glue_data.lengths(arrays)
  buckets = buckets or (arrays['input_ids'].shape[1],)
  logits = None
  for batch in eval_plan(lengths, batch_size, buckets):
    out = _gather(predict(params, rest,
                          device_batch(arrays, batch, batch_size, mesh)))
    if logits is None:
      logits = np.zeros((len(lengths),) + out.shape[1:], out.dtype)
    logits[batch.index] = out[:len(batch.index)]
  return logits


def evaluate(task: Task, logits_of: Callable[[dict], np.ndarray],
             dev: dict) -> dict:
  """The task's metrics on each of its dev sets (keys as `task.metric_keys()`),
  from `logits_of(arrays)`: the [N, outputs] logits of a dev set's rows (as
  `predict_logits` gives them)."""
  out = {}
  for d in task.dev:
    logits = logits_of(dev[d.name])
    preds = logits[:, 0] if task.is_regression else logits.argmax(axis=-1)
    for name, value in glue_metrics.compute(task.metrics, preds,
                                            dev[d.name]['labels']).items():
      out[name + d.suffix] = value
  return out


class Compiled(NamedTuple):
  train_step: Callable     # (params, opt_state, rest, batch, key, step)
  predict: Callable        # (params, rest, batch) -> logits
  init_opt: Callable       # params -> opt_state
  params: dict             # shardings of the params tree
  rest: dict               # shardings of the untrained MLM head


def compile_steps(task: Task, bert_cfg: bert.BertConfig, cfg: FinetuneConfig,
                  template: dict, rest: dict, steps: int, mesh,
                  teacher_cfg: bert.BertConfig | None = None) -> Compiled:
  """The jitted, sharded train step, prediction and optimizer init; `template`
  is the params tree (arrays or shapes). `teacher_cfg`: the online teacher's
  config (its params are `rest['teacher']`)."""
  replicated = NamedSharding(mesh, P())
  p_sh = param_shardings(bert_cfg, template, mesh)
  tx = optim.make(cfg.optim_config(), steps,
                  jax.tree.map(lambda _: False, template))
  o_sh = sharding.shardings_like_params(jax.eval_shape(tx.init, template), p_sh,
                                        template, mesh)
  rest_sh = jax.tree.map(lambda _: replicated, rest)
  batch_sh = sharding.batch_sharding(mesh)
  distill = ((cfg.kd_temperature, cfg.kd_alpha, cfg.kd_beta) if cfg.distill
             else None)
  if distill is not None and teacher_cfg is not None:
    distill += (teacher_cfg.replace(hidden_dropout=0.0, attention_dropout=0.0),)
  step = jax.jit(
      functools.partial(train_step, bert_cfg, tx, task.is_regression,
                        cfg.head_dropout, distill=distill),
      in_shardings=(p_sh, o_sh, rest_sh, batch_sh, replicated, replicated),
      out_shardings=(p_sh, o_sh, replicated), donate_argnums=(0, 1))
  predict = jax.jit(functools.partial(predict_step, bert_cfg),
                    in_shardings=(p_sh, rest_sh, batch_sh), out_shardings=batch_sh)
  return Compiled(step, predict, jax.jit(tx.init, out_shardings=o_sh), p_sh,
                  rest_sh)


def fit(compiled: Compiled, params, opt_state, rest, arrays: dict,
        cfg: FinetuneConfig, steps: int, key, seed: int, mesh, bar,
        start: int = 0, on_step=None, times: list | None = None):
  """`steps` train steps over `arrays` in the batches of `train_plan` (one
  shape, so one compile, per bucket); the final params and last loss. A
  resumed run starts at step `start` (the plan's earlier batches skipped);
  `on_step(step, params, opt_state)` runs after each step (checkpoints);
  `times` gets each step's wall seconds (compiles included)."""
  lengths = glue_data.lengths(arrays)
  buckets = bucket_lengths(cfg.max_len, cfg.length_buckets)
  # On CPU, one step at a time: XLA's CPU collectives can deadlock when many
  # steps queue up on fake devices that share a small thread pool.
  sync = jax.default_backend() == 'cpu'
  loss = None
  with sharding.constraints(mesh):
    plan = train_plan(lengths, cfg.batch_size, steps, seed, buckets)
    for step, batch in enumerate(plan):
      if step < start:
        continue
      t0 = time.perf_counter()
      params, opt_state, loss = compiled.train_step(
          params, opt_state, rest,
          device_batch(arrays, batch, cfg.batch_size, mesh), key,
          np.int32(step))
      if sync:
        loss.block_until_ready()
      if times is not None:
        times.append(time.perf_counter() - t0)
      bar.update(1)
      if step % 50 == 0 or step == steps - 1:
        bar.set_postfix(loss=f'{float(loss):.4f}')
      if on_step is not None:
        on_step(step + 1, params, opt_state)
  return params, (float('nan') if loss is None else float(loss))


def check_settings(bert_cfg: bert.BertConfig, cfg: FinetuneConfig, mesh) -> None:
  divisor = sharding.batch_divisor(mesh)
  if cfg.batch_size % divisor:
    raise GlueError(f'batch_size={cfg.batch_size} must be a multiple of the '
                    f'{divisor} data-parallel devices')
  if cfg.max_len > bert_cfg.max_position_embeddings:
    raise GlueError(f'max_len={cfg.max_len} exceeds the model\'s '
                    f'{bert_cfg.max_position_embeddings} positions')
  bucket_lengths(cfg.max_len, cfg.length_buckets)    # one line if malformed
