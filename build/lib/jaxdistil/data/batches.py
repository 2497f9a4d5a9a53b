"""A run's batches from its config: prepared data through the input pipeline,
or synthetic batches; and the schedule's length in epochs of that data.

`python -m jaxdistil.train` and `python -m jaxdistil.bench --data` both read
their batches through `make_data`, so a benchmark sees what training sees.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxdistil.data import synthetic
from jaxdistil.config_lib import ConfigError


class SyntheticData:
  """Random masked batches keyed on (seed, step): resumable by the step alone."""

  def __init__(self, config, position=None):
    self.config = config
    self.position = dict(position or {'step': 0})

  def __next__(self):
    c = self.config
    rng = np.random.default_rng([c.seed, self.position['step']])
    self.position['step'] += 1
    # The global batch, whatever the process count; each process keeps its rows.
    batch = synthetic.random_batch(rng, c.batch_size, c.max_len,
                                   c.model.teacher.vocab_size)
    local = c.batch_size // jax.process_count()
    rows = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
    return {k: v[rows] for k, v in batch.items()}


def make_data(config, position, split='train'):
  if config.data == 'synthetic':
    if split == 'eval':        # fixed held-out batches, never drawn in training
      return SyntheticData(config, {'step': 2**40})
    return SyntheticData(config, position)
  if not config.data:
    raise ConfigError('data is empty: set --config.data to a directory made by '
                      'python -m jaxdistil.prepare (or "synthetic")')
  from jaxdistil.data import pipeline
  m = config.masking
  cfg = pipeline.InputConfig(
      config.data, batch_size=config.batch_size // jax.process_count(),
      seed=config.seed, max_len=config.max_len, packing=config.packing,
      mask_prob=m.mask_prob, smoothing=m.smoothing, mask_token_prob=m.mask_token,
      random_token_prob=m.random_token, process_index=jax.process_index(),
      process_count=jax.process_count(), split=split)
  return pipeline.Pipeline(cfg, position)


def steps_per_epoch(data) -> int:
  """Optimizer steps in one pass over the data: the fewest any host has (each
  host packs its own shards, so their row counts differ a little)."""
  mine = np.asarray([data.batches_per_epoch], np.int64)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    mine = multihost_utils.process_allgather(mine)
  return int(np.min(mine))


def schedule_epochs(config, data) -> None:
  """With `num_epochs`, set `total_steps` from the data's packed rows; print how
  many epochs the schedule covers (process 0)."""
  if isinstance(data, SyntheticData):
    return
  per_epoch = steps_per_epoch(data)
  if config.num_epochs:
    config.total_steps = max(1, int(np.ceil(config.num_epochs * per_epoch)))
  if jax.process_index() == 0:
    rows = data.rows(0) * jax.process_count()
    fill = data.real_tokens / max(data.rows(0) * data.max_len, 1)
    print(f'jaxdistil.train: {config.total_steps} steps of {config.batch_size} rows '
          f'cover {config.total_steps / per_epoch:.2f} epochs of {config.data} '
          f'({per_epoch} steps an epoch; ~{rows} rows of {data.max_len} tokens, '
          f'{fill:.1%} real tokens, packing {"on" if config.packing else "off"})')
