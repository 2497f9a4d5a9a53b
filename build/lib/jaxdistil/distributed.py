"""Joining the other processes of a multi-process run (before JAX's backend starts).

Explicit addresses (a GPU cluster, or several CPU processes on one machine,
which then use gloo collectives) win; on a Cloud TPU VM (libtpu installed) JAX
finds its workers by itself; otherwise the run is one process.

A lost peer (a preempted worker) is noticed by JAX's coordination service when
its heartbeats stop for `heartbeat_timeout` seconds (JAX's default is 100).
JAX then ends the survivors itself, from C++: they cannot catch it, so before
that happens `train` has saved every `checkpoint_every` steps, and rerunning
the same command on every worker resumes from the last checkpoint.
"""

from __future__ import annotations

import importlib.util
import os

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
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               initialization_timeout=init_timeout,
                               heartbeat_timeout_seconds=heartbeat_timeout)
  elif on_cloud_tpu():
    jax.distributed.initialize(initialization_timeout=init_timeout,
                               heartbeat_timeout_seconds=heartbeat_timeout)


def has_accelerator_plugin() -> bool:
  return any(importlib.util.find_spec(m) is not None
             for m in ('libtpu', 'jax_cuda12_plugin', 'jax_cuda13_plugin'))


def on_cloud_tpu() -> bool:
  return (importlib.util.find_spec('libtpu') is not None
          and os.environ.get('JAX_PLATFORMS', 'tpu') in ('', 'tpu'))
