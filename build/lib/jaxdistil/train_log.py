"""The train loop's step metrics: kept on the devices, fetched in windows, checked.

A step's metrics stay on the devices until `log_every` steps have queued (or an
evaluation or a checkpoint is due); then `StepLog.flush` fetches the window in
one transfer, so the host never waits for one step before it queues the next.
Each row is checked for a non-finite loss (a `TrainError` names the last good
checkpoint) and gets its step time, tokens/s and MFU: the window's mean, since
without a sync per step there is no time of one step.
"""

from __future__ import annotations

import time

import jax
import numpy as np


class TrainError(RuntimeError):
  """A run that cannot go on; one line names the problem."""


def fetch(tree):
  """Device -> host: the one way the loop reads values back (counted in tests)."""
  return jax.device_get(tree)


class StepLog:

  def __init__(self, config, writer, workdir: str, tokens_per_step: int,
               flops_per_step: float, peak_flops: float, last_saved: int):
    self.config, self.writer, self.workdir = config, writer, workdir
    self.tokens_per_step = tokens_per_step       # padding included
    self.flops_per_step, self.peak_flops = flops_per_step, peak_flops
    self.last_saved = last_saved                 # named by a non-finite stop
    self.pending = []                            # (step, device metrics)
    self.skips = {'in_a_row': 0, 'total': 0}
    self.last = {}                               # the newest row written
    self.clock = time.perf_counter()

  def add(self, step: int, device_metrics) -> None:
    self.pending.append((step, device_metrics))

  def flush(self, evaluate=None) -> dict:
    """Fetches, checks and writes the pending rows; `evaluate()` (called after
    the checks, its time not counted as step time) adds to the last row.
    Returns the last row ({} when nothing was pending)."""
    if not self.pending:
      return {}
    fetched = fetch([m for _, m in self.pending])
    elapsed = (time.perf_counter() - self.clock) / len(fetched)
    rows = []
    for (step, _), values in zip(self.pending, fetched):
      row = {k: float(v) for k, v in values.items()}
      self._check_finite(row, step)
      row.update(step_s=elapsed, tokens_per_s=self.tokens_per_step / elapsed,
                 real_tokens_per_s=row['tokens'] / elapsed,
                 mfu=self.flops_per_step / elapsed / self.peak_flops)
      if self.config.nonfinite == 'skip':
        row['skipped_steps'] = self.skips['total']
      rows.append((step, row))
    if evaluate is not None:
      rows[-1][1].update(evaluate())
    for step, row in rows:
      self.writer.write(step, row)
    self.pending.clear()
    self.clock = time.perf_counter()
    self.last = rows[-1][1]
    return self.last

  def _check_finite(self, row: dict, step: int) -> None:
    """Stop (TrainError, one line) on a non-finite loss, or on more skipped
    non-finite steps in a row than `max_skipped_steps`; count the skips."""
    where = (f'the last good checkpoint is step {self.last_saved} in '
             f'{self.workdir}/checkpoints')
    if row.get('skipped'):
      self.skips['total'] += 1
      self.skips['in_a_row'] += 1
      if self.skips['in_a_row'] > self.config.max_skipped_steps:
        raise TrainError(f'{self.skips["in_a_row"]} non-finite steps in a row up '
                         f'to step {step}: stopped; {where}')
    elif not np.isfinite(row['loss']):
      raise TrainError(f'non-finite loss {row["loss"]} at step {step}: stopped; '
                       f'{where}')
    else:
      self.skips['in_a_row'] = 0
