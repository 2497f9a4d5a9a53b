"""`python -m jaxdistil.train --config=configs/<name>.py --workdir=DIR`.

Reads top to bottom: config, mesh and models (`build`), data, restore-or-init,
then the loop (step, metrics, checkpoint). Rerunning the same command on the
same workdir resumes from its latest checkpoint, parameters, optimizer state,
RNG and data position included, and ends where an uninterrupted run would.
SIGTERM (a TPU preemption) saves at the current step and exits with status 0.

`config.data` is a directory made by `python -m jaxdistil.prepare`, or
`synthetic` (random masked batches drawn from (seed, step): smoke tests and
benchmarks without a corpus).
"""

from __future__ import annotations

from jaxdistil import host_memory

if __name__ == '__main__':
  host_memory.keep_freed_memory()     # before jax starts its threads

import json
import os
import signal
import sys
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jaxdistil import build, checkpoint, sharding, synthetic
from jaxdistil.config_lib import ConfigError

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints and metrics go here.')


class TrainError(RuntimeError):
  """A run that cannot go on; one line names the problem."""


class SyntheticData:
  """Random masked batches keyed on (seed, step): resumable by the step alone."""

  def __init__(self, config, position=None):
    self.config = config
    self.position = dict(position or {'step': 0})

  def __next__(self):
    c = self.config
    rng = np.random.default_rng([c.seed, self.position['step']])
    self.position['step'] += 1
    local = c.batch_size // jax.process_count()
    return synthetic.random_batch(rng, local, c.max_len, c.model.teacher.vocab_size)


def make_data(config, position):
  if config.data == 'synthetic':
    return SyntheticData(config, position)
  if not config.data:
    raise ConfigError('data is empty: set --config.data to a directory made by '
                      'python -m jaxdistil.prepare (or "synthetic")')
  from jaxdistil.data import pipeline
  cfg = pipeline.InputConfig(
      config.data, batch_size=config.batch_size // jax.process_count(),
      seed=config.seed, process_index=jax.process_index(),
      process_count=jax.process_count())
  data = pipeline.Pipeline(cfg, position,
                           expected_vocab_size=config.model.teacher.vocab_size)
  if data.max_len != config.max_len:
    raise ConfigError(f'{config.data!r} holds sequences of {data.max_len} tokens '
                      f'but max_len={config.max_len}: set --config.max_len='
                      f'{data.max_len} or prepare again')
  return data


def train(config, workdir: str) -> dict:
  # ---- models, mesh, sharded state and the jitted step ----------------------
  run = build.build(config)
  os.makedirs(workdir, exist_ok=True)
  mgr = checkpoint.manager(workdir)

  # ---- restore (this workdir's latest checkpoint) or start fresh ------------
  state, position, start = run.state, None, 0
  restored = checkpoint.restore(mgr, run.state, run.state_shardings)
  if restored is not None:
    state, position, start = restored
  data = make_data(config, position)

  # ---- preemption: SIGTERM saves where we are and exits cleanly -------------
  stop = {'now': False}
  signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))

  # ---- the loop --------------------------------------------------------------
  log = open(os.path.join(workdir, 'metrics.jsonl'), 'a') if (
      jax.process_index() == 0) else None
  metrics, last_saved = {}, start
  t0 = time.perf_counter()
  for step in range(start, config.total_steps):
    batch = sharding.global_batch(next(data), run.mesh)
    state, metrics = run.train_step(state, run.teacher_params, batch)
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if not np.isfinite(metrics['loss']):
      raise TrainError(f'non-finite loss {metrics["loss"]} at step {step + 1}: '
                       f'stopped; the last good checkpoint is step {last_saved} '
                       f'in {workdir}/checkpoints')
    done = step + 1
    if log is not None:
      elapsed = time.perf_counter() - t0
      log.write(json.dumps(dict(metrics, step=done, step_s=elapsed)) + '\n')
      log.flush()
      t0 = time.perf_counter()
    if done % config.checkpoint_every == 0 or done == config.total_steps or (
        stop['now']):
      checkpoint.save(mgr, done, state, data.position)
      last_saved = done
    if stop['now']:
      break
  mgr.wait_until_finished()
  if log is not None:
    log.close()
  return {'state': state, 'metrics': metrics, 'step': last_saved}


def main(argv):
  del argv
  if _CONFIG.value is None or not _WORKDIR.value:
    raise app.UsageError('--config=configs/<name>.py and --workdir=DIR are required')
  try:
    result = train(_CONFIG.value, _WORKDIR.value)
  except (ConfigError, TrainError, ValueError) as e:
    print(f'jaxdistil.train: {e}', file=sys.stderr)
    sys.exit(2)
  print(f'jaxdistil.train: step {result["step"]}, loss '
        f'{result["metrics"].get("loss", float("nan")):.4f}')


if __name__ == '__main__':
  app.run(main)
