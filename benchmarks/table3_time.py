"""One framework's timed passes over table 3's models, in a process of its own.

    python benchmarks/table3_time.py SPEC.json

`benchmarks/table3.py` writes SPEC (the framework, the models, their encoded
inputs, the batch sizes, threads, warm-up) and runs this once per framework,
one after the other, so no two frameworks' thread pools ever share the cores.
It writes SPEC's `out` (JSON: per model and batch size, the time of every
batch) and `logits` (npz: every row's logits, `MODEL/VARIANT/bB`).

Every framework gets the same rows in the same order, `batch_size` at a time:

- `jax_float32`, `jax_bfloat16`: `jaxdistil.inference`, each batch padded to
  its length bucket and a short last batch filled up (one compiled shape per
  bucket); every bucket compiled, then run once untimed.
- `torch`: `AutoModelForSequenceClassification` (eager, its default SDPA
  attention) under `torch.inference_mode()`, float32.
- `onnxruntime`: the ONNX file from `torch.onnx.export`,
  `CPUExecutionProvider`, graph optimisations at their default (all);
  `onnxruntime_ours` and `onnxruntime_int8` the same on our own export
  (`convert export --format=onnx`, float32 and `--quantize=int8`).

torch and ONNX Runtime get each batch cut to its longest row (batch 1: no
padding at all), after `warmup` untimed batches. A batch's time runs from the
call with host arrays ready to the logits in a NumPy array.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

INPUTS = ('input_ids', 'attention_mask', 'token_type_ids')


def cut_batches(arrays: dict, batch_size: int, names) -> list[dict]:
  """Consecutive rows, each batch cut to its longest row."""
  n = len(arrays['input_ids'])
  out = []
  for s in range(0, n, batch_size):
    rows = slice(s, min(s + batch_size, n))
    length = int(arrays['attention_mask'][rows].sum(axis=1).max())
    out.append({k: np.ascontiguousarray(arrays[k][rows, :length], np.int64)
                for k in names})
  return out


def timed(run, batches: list, warmup: int) -> tuple[list[float], np.ndarray]:
  """(seconds per batch, logits of every row) of `run(batch) -> logits`."""
  for b in batches[:warmup]:
    run(b)
  times, outs = [], []
  for b in batches:
    t = time.perf_counter()
    out = run(b)
    times.append(time.perf_counter() - t)
    outs.append(out)
  return times, np.concatenate(outs)


def torch_runs(model: dict, arrays: dict, spec: dict) -> dict:
  import torch
  import transformers
  from benchmarks.table3_models import input_names
  torch.set_num_threads(spec['threads'])
  hf = transformers.AutoModelForSequenceClassification.from_pretrained(
      model['folder']).eval()
  names = input_names(model['layout'])
  out = {'torch': {'params': int(sum(p.numel() for p in hf.parameters())),
                   'attention': hf.config._attn_implementation}}

  def run(batch):
    with torch.inference_mode():
      return hf(**{k: torch.from_numpy(v) for k, v in batch.items()}
                ).logits.numpy()
  for bs in spec['batch_sizes']:
    out['torch'][bs] = timed(run, cut_batches(arrays[bs], bs, names),
                             spec['warmup'])
  return out


def ort_runs(model: dict, arrays: dict, spec: dict,
             variant: str = 'onnxruntime') -> dict:
  """ONNX Runtime on the model's ONNX file of `variant`: `onnxruntime` (from
  `torch.onnx.export`), `onnxruntime_ours` or `onnxruntime_int8` (our own
  export, float32 or int8)."""
  import onnxruntime as ort
  options = ort.SessionOptions()
  options.intra_op_num_threads = spec['threads']
  options.inter_op_num_threads = 1
  session = ort.InferenceSession(model[ONNX_FILES[variant]], options,
                                 providers=['CPUExecutionProvider'])
  names = [i.name for i in session.get_inputs()]
  out = {variant: {'version': ort.__version__}}
  run = lambda batch: session.run(['logits'], batch)[0]
  for bs in spec['batch_sizes']:
    out[variant][bs] = timed(run, cut_batches(arrays[bs], bs, names),
                                   spec['warmup'])
  return out


def jax_runs(model: dict, arrays: dict, spec: dict) -> dict:
  import jax
  from jaxdistil import convert, inference, inference_bench
  loaded = convert.load_model(model['folder'])
  out = {}
  for dtype in spec['dtypes']:
    cfg, params, head = inference.prepare(loaded.config, loaded.params,
                                          loaded.head, dtype)
    params, head = jax.device_put((params, head))
    entry = out[f'jax_{dtype}'] = {
        'params': inference_bench.param_counts(params, head)}
    for bs in spec['batch_sizes']:
      a = arrays[bs]
      lengths = a['attention_mask'].sum(axis=1)
      plan = inference.plan(lengths, bs, spec['buckets'])
      used = sorted({b.length for b in plan})
      compiled, seconds = inference.compile_buckets(cfg, params, head, a, bs, used)
      host = [(inference.host_batch(a, b, bs), b) for b in plan]
      for length in used:
        first = next(h for h, b in host if b.length == length)
        jax.block_until_ready(compiled[length](params, head, first))

      def run(item):
        h, b = item
        return np.asarray(compiled[b.length](params, head, h))[:len(b.index)]
      times, logits = timed(run, host, 0)
      entry[bs] = (times, logits)
      entry[f'compile_s_b{bs}'] = float(sum(seconds.values()))
      entry[f'buckets_b{bs}'] = {str(k): sum(b.length == k for b in plan)
                                 for k in used}
      entry[f'padding_b{bs}'] = 1.0 - float(lengths.sum()) / sum(
          bs * b.length for b in plan)
      if bs == 1 and spec.get('profile') and dtype == 'float32':
        entry['profile_b1'] = profile(compiled, params, head, host[:spec['profile']])
  return out


def profile(compiled: dict, params, head, items: list) -> dict:
  """Where a batch-1 pass's time goes: the traced XLA ops' thread-seconds a
  batch, by kind (matmul or other), the costliest ops, against the wall time
  (`benchmarks.op_profile`'s trace reader)."""
  import tempfile
  import jax
  from benchmarks import op_profile
  names, kinds = {}, {}
  for fn in compiled.values():
    n, k = op_profile.hlo_index(fn.as_text())
    names.update(n)
    kinds.update(k)
  with tempfile.TemporaryDirectory() as d:
    t = time.perf_counter()
    with jax.profiler.trace(d):
      for h, b in items:
        jax.block_until_ready(compiled[b.length](params, head, h))
    wall = (time.perf_counter() - t) / len(items)
    events = op_profile.read_trace(d)
  r = op_profile.summarize(events, names, kinds, len(items), wall, 12)
  by_kind = {k: sum(v[k] for v in r['parts'].values()) for k in ('matmul', 'other')}
  return {'batches': len(items), 'wall_s_per_batch_traced': wall,
          'op_thread_s_per_batch': r['op_thread_s_per_step'],
          'by_kind_thread_s': by_kind, 'matmul_share': r['matmul_share'],
          'top_ops': r['top_ops']}


ONNX_FILES = {'onnxruntime': 'onnx', 'onnxruntime_ours': 'onnx_ours',
              'onnxruntime_int8': 'onnx_int8'}
RUNNERS = {'torch': torch_runs, 'onnxruntime': ort_runs, 'jax': jax_runs,
           'onnxruntime_ours': lambda m, a, s: ort_runs(m, a, s, 'onnxruntime_ours'),
           'onnxruntime_int8': lambda m, a, s: ort_runs(m, a, s, 'onnxruntime_int8')}


def summary(times: list[float]) -> dict:
  ms = np.asarray(times) * 1e3
  return {'batches': len(times), 'p50_ms': float(np.percentile(ms, 50)),
          'p90_ms': float(np.percentile(ms, 90)), 'mean_ms': float(ms.mean()),
          'total_s': float(ms.sum() / 1e3)}


def main(spec_path: str) -> None:
  with open(spec_path) as f:
    spec = json.load(f)
  spec['batch_sizes'] = [int(b) for b in spec['batch_sizes']]
  report, logits = {'framework': spec['framework'], 'models': {}}, {}
  if spec['framework'] == 'jax':
    import jax
    from jaxdistil import flops
    report['jax_version'] = jax.__version__
    report['matmul_rate'] = {d: flops.matmul_rate(d, 1024)
                             for d in spec['dtypes']}
  for model in spec['models']:
    data = np.load(model['inputs'])
    arrays = {}
    for bs in spec['batch_sizes']:
      n = spec['examples'][str(bs)]
      arrays[bs] = {k: data[k][:n] for k in INPUTS}
    t = time.perf_counter()
    runs = RUNNERS[spec['framework']](model, arrays, spec)
    done = report['models'][model['name']] = {}
    for variant, entry in runs.items():
      done[variant] = {}
      for key, value in entry.items():
        if isinstance(key, int):
          times, out = value
          n = len(out)
          done[variant][f'b{key}'] = dict(summary(times), examples=n,
                                          examples_per_s=n / sum(times))
          logits[f"{model['name']}/{variant}/b{key}"] = out
        else:
          done[variant][key] = value
    print(f"  {spec['framework']:12s} {model['name']:20s} "
          f"{time.perf_counter() - t:6.1f} s", file=sys.stderr, flush=True)
  np.savez(spec['logits'], **logits)
  with open(spec['out'], 'w') as f:
    json.dump(report, f, indent=1)


if __name__ == '__main__':
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  main(sys.argv[1])
