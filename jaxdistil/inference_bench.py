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
  try:      # a cache already opened (at another directory) is reopened here
    from jax.experimental.compilation_cache import compilation_cache
    compilation_cache.reset_cache()
  except (ImportError, AttributeError):
    pass
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


# ----------------------------------------------------------------------------
# The command: python -m jaxdistil.bench --inference ...

def define_flags(fv) -> None:
  from absl import flags
  s, i = flags.DEFINE_string, flags.DEFINE_integer
  s('model', None, 'A model folder (Hugging Face or jaxdistil).', flag_values=fv)
  s('data_dir', None, 'The glue_data folder (CoLA/, STS-B/, ...).', flag_values=fv)
  s('task', None, 'The GLUE task, e.g. STS-B.', flag_values=fv)
  s('split', 'dev', "The split ('dev' is the task's first dev set).", flag_values=fv)
  i('batch_size', 1, 'Examples a batch.', flag_values=fv)
  i('max_examples', 0, 'Only the first N examples (0: all).', flag_values=fv)
  i('max_len', 128, 'Tokens an example (longer pairs are truncated).',
    flag_values=fv)
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'],
                    'Compute dtype (bfloat16: matrices cast once).', flag_values=fv)
  flags.DEFINE_enum('attention', 'auto', ['auto', 'xla', 'cudnn', 'splash'],
                    'Attention kernel.', flag_values=fv)
  s('output', None, 'Also write the report here as JSON.', flag_values=fv)
  s('compilation_cache', DEFAULT_CACHE, "XLA's persistent compilation cache "
    "folder ('' for none).", flag_values=fv)
  i('matmul_size', 1024, 'n of the n^3 matmul measured for MFU (unknown '
    'chips, or float32).', flag_values=fv)
  flags.DEFINE_bool('inference', True, 'This mode (for jaxdistil.bench).',
                    flag_values=fv)


def load_inputs(args):
  """(loaded model, head or None, encoded arrays, task name, split) from the
  flags; GlueError, ConvertError or TokenizerError (one line) when unusable."""
  from jaxdistil import convert
  from jaxdistil.glue import data as glue_data
  from jaxdistil.glue import run as glue_run
  from jaxdistil.glue import tasks
  from jaxdistil.models import bert
  task = tasks.get(args.task)
  split = args.split
  if split == 'dev' and 'dev' not in glue_data.split_names(task):
    split = task.dev[0].name                  # MNLI: dev_matched
  examples = glue_data.read_split(task, split, args.data_dir)
  if args.max_examples > 0:
    examples = examples.take(np.arange(min(args.max_examples, len(examples))))
  if not len(examples):
    raise tasks.GlueError(f'{examples.origin}: no examples to run')
  loaded = convert.load_model(args.model, init_missing_head=True)
  if not loaded.tokenizer_dir:
    raise convert.ConvertError(f'{args.model}: no tokenizer with the model')
  tokenizer = glue_run.load_tokenizer(loaded.tokenizer_dir)
  cfg = loaded.config
  max_len = min(args.max_len, cfg.max_position_embeddings - cfg.position_offset)
  style = 'roberta' if cfg.family in bert.ROBERTA_FAMILIES else 'bert'
  arrays = glue_data.encode(examples, tokenizer, max_len, style)
  head = getattr(loaded, 'head', None)
  return loaded, head if isinstance(head, dict) else None, arrays, task.name, split


def report_text(r: dict) -> str:
  p, lat = r['params'], r['latency_ms']
  return '\n'.join([
      f"model        {r['model']} ({r['task']} {r['split']}, {r['examples']} "
      f"examples, mean {r['mean_length']:.1f} tokens)",
      f"params       {p['total']:,} (embeddings {p['embeddings']:,}, encoder "
      f"{p['encoder']:,}, head {p['head']:,}); head: {r['head']}",
      f"device       {r['device_kind']} ({r['platform']}); CPU "
      f"{r['cpu']['model_name']} (family {r['cpu'].get('family')}, model "
      f"{r['cpu'].get('model')}), {r['dtype']}, attention {r['attention']}",
      f"compile      {r['compile_s']:.2f} s over {len(r['buckets'])} bucket(s); "
      f"cache {r['compilation_cache']['dir'] or 'off'}: "
      f"{r['compilation_cache']['entries_before']} entries found, "
      f"{r['compilation_cache']['entries_written']} written",
      f"latency      p50 {lat['p50']:.2f} ms, p90 {lat['p90']:.2f} ms at batch "
      f"{r['batch_size']} ({r['batches']} batches, padding "
      f"{r['padding_fraction']:.1%})",
      f"throughput   {r['examples_per_s']:.1f} examples/s; one pass "
      f"{r['total_s']:.2f} s",
      f"model FLOPs  {r['flops_per_example'] / 1e9:.3f} GFLOP/example; MFU "
      f"{r['mfu']:.4f} (of {r['peak_flops'] / 1e12:.3f} TFLOP/s, "
      f"{r['peak_source']})"])


def main(argv=None) -> int:
  from jaxdistil import cli, convert
  from jaxdistil.data.tokenizer import TokenizerError
  from jaxdistil.glue.tasks import GlueError
  prog = 'jaxdistil.bench --inference'
  try:
    args = cli.parse(prog, __doc__, define_flags, argv)
    cli.require(args, 'model', 'data_dir', 'task')
    if args.batch_size < 1:
      raise cli.UsageError(f'--batch_size={args.batch_size}: give 1 or more')
    cache = set_compilation_cache(args.compilation_cache)
    before = cache_entries(cache)
    start = time.perf_counter()
    loaded, head, arrays, task, split = load_inputs(args)
    r = time_inference(loaded.config, loaded.params, head, arrays,
                       args.batch_size, args.dtype, args.attention,
                       args.matmul_size)
  except (cli.UsageError, GlueError, convert.ConvertError, TokenizerError) as e:
    print(f'{prog}: {(str(e).splitlines() or [""])[0]}', file=sys.stderr)
    return 2
  r.update(model=args.model, task=task, split=split, wall_s=time.perf_counter()
           - start, compilation_cache={'dir': cache, 'entries_before': before,
                                       'entries_written': cache_entries(cache)
                                       - before})
  print(report_text(r), flush=True)
  if args.output:
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, 'w') as f:
      json.dump(r, f, indent=1)
  return 0
