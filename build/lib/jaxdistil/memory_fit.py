"""Whether a compiled step fits its devices, from XLA's memory analysis, before
it runs: a step that cannot fit is one line naming the config keys to lower,
not an allocation failure (or the operating system's OOM killer) mid-run.

Per device, the step needs its arguments, outputs and temporaries, with the
donated state (aliased to its output) counted once. A device's memory is its
`memory_stats()['bytes_limit']` (TPU, GPU); CPU devices share the host's
available memory (/proc/meminfo), split evenly.
"""

from __future__ import annotations

import jax

from jaxdistil.config_lib import ConfigError

GIB = 2 ** 30


def step_bytes(compiled) -> dict:
  """Per-device bytes of a compiled step (`jax.stages.Compiled`)."""
  m = compiled.memory_analysis()
  size = lambda name: int(getattr(m, name, 0) or 0)
  out = {'argument_bytes': size('argument_size_in_bytes'),
         'output_bytes': size('output_size_in_bytes'),
         'alias_bytes': size('alias_size_in_bytes'),
         'temp_bytes': size('temp_size_in_bytes'),
         'generated_code_bytes': size('generated_code_size_in_bytes')}
  out['total_bytes_per_device'] = (out['argument_bytes'] + out['output_bytes']
                                   - out['alias_bytes'] + out['temp_bytes'])
  return out


def host_available_bytes() -> int | None:
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def available_bytes(device=None) -> int | None:
  """Memory one device can use now, or None when it cannot be told."""
  device = device or jax.local_devices()[0]
  try:
    stats = device.memory_stats() or {}
  except Exception:  # some backends do not implement it
    stats = {}
  if stats.get('bytes_limit'):
    return int(stats['bytes_limit']) - int(stats.get('bytes_in_use', 0))
  host = host_available_bytes()
  if host is None:
    return None
  same_kind = [d for d in jax.local_devices() if d.platform == device.platform]
  return host // max(1, len(same_kind))


def check(compiled, config, what: str = 'the train step') -> dict:
  """`step_bytes(compiled)`; raises ConfigError when it exceeds the memory of
  a device, naming the keys that lower it."""
  need = step_bytes(compiled)
  have = available_bytes()
  if have is not None and need['total_bytes_per_device'] > have:
    rows = config.batch_size // max(1, config.micro_batches)
    raise ConfigError(
        f'{what} needs {need["total_bytes_per_device"] / GIB:.1f} GiB per device '
        f'(temporaries {need["temp_bytes"] / GIB:.1f}, arguments '
        f'{need["argument_bytes"] / GIB:.1f}) but {have / GIB:.1f} GiB is free: '
        f'lower the rows per pass (batch_size={config.batch_size} / '
        f'micro_batches={config.micro_batches} = {rows}: raise micro_batches), '
        f'max_len={config.max_len}, or shard the state with mesh.fsdp')
  return need


def compile_checked(jitted, args, config, what: str = 'the train step'):
  """`jitted` compiled for `args` (arrays or jax.ShapeDtypeStructs), after the
  memory check; call the result with arguments like `args`."""
  compiled = jitted.lower(*args).compile()
  check(compiled, config, what)
  return compiled
