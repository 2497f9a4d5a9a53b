"""Joining the other processes of a multi-process run (before JAX's backend starts).

Explicit addresses (a GPU cluster, or several CPU processes on one machine,
which then use gloo collectives) win; on a Cloud TPU VM (libtpu installed) JAX
finds its workers by itself; otherwise the run is one process.

A lost peer (a preempted or killed worker) is noticed by JAX's coordination
service when its heartbeats stop for `heartbeat_timeout` seconds (JAX's
default is 100; `--heartbeat_timeout` sets it). By default JAX then aborts the
survivors from C++ (exit 134, a fatal log and a thread dump). Instead, the run
is made recoverable (`jax_enable_recoverability`: JAX leaves the survivors
alone) and `PeerWatch` asks the service which processes are alive; when one
is gone, each survivor prints one line naming it and the last checkpoint and
exits with status 3, within about `heartbeat_timeout` seconds of the loss.
Its main thread may be blocked inside a collective that will never complete,
so it leaves with `os._exit`; checkpoints are safe (orbax renames a
checkpoint into place only once it is complete). Rerunning the same command
on every process resumes from the last checkpoint.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from typing import Callable

import jax

from jaxdistil.config_lib import ConfigError


def initialize(coordinator_address: str | None, num_processes: int | None,
               process_id: int | None, init_timeout: int = 300,
               heartbeat_timeout: int = 100) -> None:
  given = [f for f in (coordinator_address, num_processes, process_id)
           if f is not None]
  if given:
    if len(given) != 3:
      raise ConfigError('a multi-process run needs all of --coordinator_address, '
                        '--num_processes and --process_id')
    if os.environ.get('JAX_PLATFORMS', '') == 'cpu' or not has_accelerator_plugin():
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.config.update('jax_enable_recoverability', True)    # see PeerWatch
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               initialization_timeout=init_timeout,
                               heartbeat_timeout_seconds=heartbeat_timeout)
  elif on_cloud_tpu():
    jax.config.update('jax_enable_recoverability', True)
    jax.distributed.initialize(initialization_timeout=init_timeout,
                               heartbeat_timeout_seconds=heartbeat_timeout)


def has_accelerator_plugin() -> bool:
  return any(importlib.util.find_spec(m) is not None
             for m in ('libtpu', 'jax_cuda12_plugin', 'jax_cuda13_plugin'))


def on_cloud_tpu() -> bool:
  return (importlib.util.find_spec('libtpu') is not None
          and os.environ.get('JAX_PLATFORMS', 'tpu') in ('', 'tpu'))


EXIT_PEER_LOST = 3


class PeerWatch:
  """A thread that exits this process (one line, status 3) when another
  process of the run is lost. `last_checkpoint()` gives the step to name.

  The service's `get_live_nodes` returns once every live process has asked,
  or once the missing ones are declared dead (after `heartbeat_timeout`), so
  the watchers of all processes ask together. `stop()` is called when the run
  is over, so that peers leaving at the end are not taken for lost.
  """

  def __init__(self, last_checkpoint: Callable[[], str], prog: str = 'jaxdistil.train'):
    self.last_checkpoint, self.prog = last_checkpoint, prog
    self.stopped = threading.Event()
    self.thread = None
    client = _client()
    if client is None or jax.process_count() == 1:
      return
    self.client = client
    self.thread = threading.Thread(target=self._watch, name='peer-watch',
                                   daemon=True)
    self.thread.start()

  def _watch(self) -> None:
    everyone = list(range(jax.process_count()))
    while not self.stopped.wait(1.0):
      try:
        live = self.client.get_live_nodes(everyone)
      except Exception:       # the service itself is gone: JAX reports that
        return
      lost = [p for p in everyone if p not in live]
      if lost and not self.stopped.is_set():
        which = ', '.join(str(p) for p in lost)
        # On a line of its own: a progress bar may be mid-line on stderr.
        print(f'\n{self.prog}: process {which} of {len(everyone)} was lost (no '
              f'heartbeat); stopped this one (process {jax.process_index()}); '
              f'{self.last_checkpoint()}: rerun the same command on every '
              f'process to resume', file=sys.stderr, flush=True)
        os._exit(EXIT_PEER_LOST)

  def stop(self) -> None:
    self.stopped.set()


def _client():
  from jax._src import distributed as jax_distributed   # no public accessor
  return jax_distributed.global_state.client


def leave_together(watch: PeerWatch, timeout: float = 120.0) -> None:
  """At the end of a run: wait for every process, stop watching (peers
  leaving from here on are not lost), and leave in order. A recoverable run's
  processes do not wait for each other at exit, so the others disconnect
  first and process 0, which hosts the coordination service, waits until
  they have (else a late one fails to disconnect and aborts)."""
  if watch.thread is None:
    watch.stop()
    return
  import time
  from jax.experimental import multihost_utils
  multihost_utils.sync_global_devices('jaxdistil: run complete')
  watch.stop()
  if jax.process_index() != 0:
    jax.distributed.shutdown()
    return
  everyone = list(range(jax.process_count()))
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if list(watch.client.get_live_nodes(everyone)) == [0]:
      return
    time.sleep(0.2)
