"""Time classifier inference over a GLUE split, as the paper's table 3 does.

    python -m jaxdistil.bench --inference --model=DIR --data_dir=GLUE_DIR \\
        --task=STS-B [--split=dev] [--batch_size=1] [--max_examples=N] \\
        [--dtype=float32|bfloat16] [--output=FILE.json] [--compilation_cache=DIR]

The split's examples are read from its TSV file (never TensorFlow), encoded
with the model's tokenizer at `--max_len`, and run in file order through
`jaxdistil.inference`: consecutive batches of `--batch_size`, each padded to
its length bucket, one compile per bucket (timed apart, before any timed
batch). Every compiled bucket runs once untimed (warm-up); then every batch of
one pass is timed, host-to-device copy and result included.

Reported: parameters (embeddings, encoder layers, classifier head; the unused
MLM head is not counted), compile seconds (total and per bucket), latency per
batch (p50, p90 ms), examples/s, model FLOPs per example (encoder at each
example's real length plus the head: `flops.inference`), MFU against the
published bfloat16 peak of a known accelerator (`flops.KNOWN_PEAKS`) or else a
matmul measured in the same run and dtype, the CPU model and the device kind.

A model with a classifier head (`Loaded.head`, in `glue.heads`' format) runs
it; one without is timed as the encoder alone (its first-token output) and
reported with `head: none`. XLA's persistent compilation cache
(`--compilation_cache`, '' for none) keeps compiled buckets across runs; the
report counts the entries the run found and wrote, so a second run that wrote
none compiled nothing (its compile_s is the cache's load time).
Bad input (no model, unknown task, no split file, an empty split) is one line
on stderr and exit status 2.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

DEFAULT_CACHE = os.path.join('~', '.cache', 'jaxdistil', 'xla')


def cpu_info() -> dict:
  """The host CPU's model name, family and model (/proc/cpuinfo, else lscpu)."""
  fields = {'model name': 'model_name', 'cpu family': 'family', 'model': 'model'}
  info = {}
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        key = key.strip()
        if key in fields and fields[key] not in info:
          info[fields[key]] = value.strip()
        if not line.strip() and info:
          break
  except OSError:
    pass
  if 'model_name' not in info:
    try:
      out = subprocess.run(['lscpu'], capture_output=True, text=True,
                           timeout=10).stdout
      for line in out.splitlines():
        key, _, value = line.partition(':')
        names = {'Model name': 'model_name', 'CPU family': 'family',
                 'Model': 'model'}
        if key.strip() in names:
          info.setdefault(names[key.strip()], value.strip())
    except (OSError, subprocess.SubprocessError):
      pass
  info.setdefault('model_name', platform.processor() or 'unknown')
  info['cores'] = len(os.sched_getaffinity(0)) if hasattr(
      os, 'sched_getaffinity') else os.cpu_count()
  return info


def _count(tree) -> int:
  import jax
  return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


def param_counts(params: dict, head: dict | None) -> dict:
  """Parameters used by inference: embeddings, encoder layers, head, total
  (the MLM head `cls` and an unused pooler are left out)."""
  embeddings = _count(params.get('embeddings', {}))
  encoder = _count(params.get('encoder', {}))
  head_n = _count(head) if head is not None else 0
  return {'embeddings': embeddings, 'encoder': encoder, 'head': head_n,
          'total': embeddings + encoder + head_n}


def num_outputs(head: dict | None) -> int | None:
  if head is None:
    return None
  last = head['out_proj'] if 'out_proj' in head else head['classifier']
  return int(np.shape(last['bias'])[0])


def set_compilation_cache(directory: str | None) -> str | None:
  """Point XLA's persistent cache at `directory` (created), caching every
  program however small or quick to compile; None or '': off."""
  if not directory:
    return None
  import jax
  directory = os.path.abspath(os.path.expanduser(directory))
  os.makedirs(directory, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)
  return directory


def cache_entries(directory: str | None) -> int:
  if not directory or not os.path.isdir(directory):
    return 0
  return sum(len(files) for _, _, files in os.walk(directory))


def time_inference(cfg, params: dict, head: dict | None, arrays: dict,
                   batch_size: int, dtype: str = 'float32',
                   attention: str = 'auto', matmul_n: int = 1024,
                   max_len: int | None = None) -> dict:
  """Compile, warm up and time one pass over `arrays` (encoded rows, in
  order) in batches of `batch_size`; the report as a dict (module doc)."""
  import jax
  from jaxdistil import flops, inference
  cfg, params, head = inference.prepare(cfg, params, head, dtype, attention)
  lengths = arrays['attention_mask'].sum(axis=1).astype(np.int64)
  if not len(lengths):
    raise ValueError('no examples to run')
  max_len = max_len or arrays['input_ids'].shape[1]
  buckets = inference.bucket_lengths(max_len)
  plan = inference.plan(lengths, batch_size, buckets)
  used = sorted({b.length for b in plan})
  params, head = jax.device_put((params, head))
  compiled, compile_times = inference.compile_buckets(
      cfg, params, head, arrays, batch_size, used)
  host = [inference.host_batch(arrays, b, batch_size) for b in plan]
  for length in used:                                  # warm-up, untimed
    first = next(h for h, b in zip(host, plan) if b.length == length)
    jax.block_until_ready(compiled[length](params, head, first))
  times = []
  for h, b in zip(host, plan):
    t = time.perf_counter()
    jax.block_until_ready(compiled[b.length](params, head, h))
    times.append(time.perf_counter() - t)
  device = jax.devices()[0]
  outputs = num_outputs(head)
  per_example = flops.inference(cfg, lengths, outputs) / len(lengths)
  padded = sum(batch_size * b.length * flops.encoder_forward(cfg, b.length)
               for b in plan) / len(lengths)
  known = flops.known_peak(device.device_kind, dtype)
  peak = known or flops.matmul_rate(dtype, matmul_n)
  examples_per_s = len(lengths) / sum(times)
  ms = np.asarray(times) * 1e3
  return {
      'examples': int(len(lengths)), 'batch_size': batch_size,
      'batches': len(plan), 'dtype': dtype, 'attention': cfg.attention,
      'head': 'none' if head is None else f'{outputs} outputs',
      'params': param_counts(params, head),
      'mean_length': float(lengths.mean()), 'max_len': int(max_len),
      'buckets': {str(k): sum(b.length == k for b in plan) for k in used},
      'padding_fraction': 1.0 - float(lengths.sum()) / sum(
          batch_size * b.length for b in plan),
      'compile_s': float(sum(compile_times.values())),
      'compile_s_per_bucket': {str(k): v for k, v in compile_times.items()},
      'latency_ms': {'p50': float(np.percentile(ms, 50)),
                     'p90': float(np.percentile(ms, 90)),
                     'mean': float(ms.mean())},
      'total_s': float(sum(times)),
      'examples_per_s': examples_per_s,
      'flops_per_example': per_example,
      'flops_per_example_padded': padded,
      'mfu': examples_per_s * per_example / peak,
      'peak_flops': peak,
      'peak_source': 'published' if known else f'measured matmul {matmul_n}^3',
      'device_kind': device.device_kind, 'platform': device.platform,
      'cpu': cpu_info(),
      'jax_version': jax.__version__,
  }


def synthetic_arrays(n: int, vocab_size: int, max_len: int = 128,
                     seed: int = 0, first_word: int = 104) -> dict:
  """`n` encoded sentence pairs of GLUE-like lengths (log-normal, median 28
  tokens, as STS-B and MRPC dev pairs; within [8, max_len]): `[CLS] a [SEP]
  b [SEP]` of random words, token type 1 on `b [SEP]`, padded to max_len."""
  rng = np.random.default_rng(seed)
  lengths = np.clip(np.round(rng.lognormal(np.log(28), 0.45, n)), 8,
                    max_len).astype(np.int64)
  ids = np.zeros((n, max_len), np.int32)
  mask = np.zeros((n, max_len), np.int32)
  types = np.zeros((n, max_len), np.int32)
  for i, length in enumerate(lengths):
    ids[i, :length] = rng.integers(first_word, vocab_size, size=length)
    split = 1 + int(rng.integers(1, length - 2))
    ids[i, [0, split, length - 1]] = (101, 102, 102)
    mask[i, :length] = 1
    types[i, split + 1:length] = 1
  return {'input_ids': ids, 'attention_mask': mask, 'token_type_ids': types}
