"""The PyTorch items of `benchmarks/accelerator.py`, one a process.

    python -m benchmarks.accelerator_torch '{"kind": "train", "max_len": 128,
        "tiny": false, "device": "cuda", "steps": 10}'

Run by accelerator.py in a child process (JAX kept on the CPU there), so that
PyTorch's CUDA libraries never share a process with JAX's. Prints one JSON
object as the last line of stdout.

- `train`: `benchmarks.torch_distil.benchmark` (the same step as ours:
  teacher BertForMaskedLM, student DistilBertForMaskedLM, the same losses,
  AdamW) at accelerator.py's config for that length, bfloat16 autocast, SDPA
  attention, on the same random full-length rows; a batch that does not fit is
  halved once. `mfu_published` is against the chip's published bfloat16 peak
  (`jaxdistil.flops.KNOWN_PEAKS`) where it is known.
- `inference`: eager `BertForSequenceClassification` and
  `DistilBertForSequenceClassification` (random weights, 2 labels, eval,
  `torch.no_grad`) at batch 1 over the same synthetic GLUE-like rows as the
  JAX items, each row at its own length (no padding), in float32 and in
  bfloat16 (the weights cast); 10 untimed rows first, then every row timed.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def _sync(device: str) -> None:
  import torch
  if device == 'cuda':
    torch.cuda.synchronize()


def device_name(device: str) -> str:
  import torch
  from jaxdistil import inference_bench
  if device == 'cuda':
    return torch.cuda.get_device_name()
  return inference_bench.cpu_info()['model_name']


def train(spec: dict) -> dict:
  import torch
  from benchmarks import accelerator, torch_distil
  from jaxdistil import flops
  rows = (accelerator.TINY_ROWS if spec['tiny']
          else accelerator.BASE_ROWS[spec['max_len']])
  halved_from = None
  while True:
    config = accelerator.train_config(spec['tiny'], spec['max_len'], rows)
    try:
      r = torch_distil.benchmark(config, spec['steps'], warmup=1,
                                 matmul_n=512 if spec['tiny'] else 8192,
                                 device=spec['device'],
                                 attn_implementation='sdpa')
      break
    except torch.cuda.OutOfMemoryError:
      if halved_from is not None or rows < 2:
        raise
      halved_from, rows = rows, rows // 2
      torch.cuda.empty_cache()
  r.pop('step_times_s', None)
  peak = flops.known_peak(r['device_kind'], 'bfloat16')
  r['mfu_published'] = (r['tokens_per_s'] * r['flops_per_token'] / peak
                        if peak else None)
  r['batch_halved_from'] = halved_from
  return r


def _hf_model(name: str, shape: dict, dtype: str, device: str):
  import torch
  import transformers
  from benchmarks import torch_distil
  from jaxdistil.models import bert
  cfg = bert.BertConfig(**shape, hidden_dropout=0.0, attention_dropout=0.0)
  if name == 'bert':
    hf = torch_distil.hf_teacher_config(cfg, 'sdpa')
    cls = transformers.BertForSequenceClassification
  else:
    hf = torch_distil.hf_student_config(cfg, 'sdpa')
    cls = transformers.DistilBertForSequenceClassification
  hf.num_labels = 2
  torch.manual_seed(0)
  model = cls(hf).eval().to(device=device, dtype=getattr(torch, dtype))
  return cfg, model


def inference(spec: dict) -> dict:
  import torch
  from benchmarks import accelerator
  from jaxdistil.data import synthetic
  device, tiny = spec['device'], spec['tiny']
  max_len = 32 if tiny else 128
  n = 5 if tiny else 256
  out = {'device_kind': device_name(device), 'batch_size': 1,
         'torch_version': torch.__version__}
  for name, shape in accelerator.inference_shapes(tiny).items():
    for dtype in ('bfloat16', 'float32'):
      cfg, model = _hf_model(name, shape, dtype, device)
      arrays = synthetic.glue_like_pairs(n, cfg.vocab_size, max_len,
                                                seed=0)
      lengths = arrays['attention_mask'].sum(axis=1)
      rows = []
      for i, length in enumerate(lengths):
        row = {'input_ids': arrays['input_ids'][i:i + 1, :length],
               'attention_mask': arrays['attention_mask'][i:i + 1, :length]}
        if name == 'bert':
          row['token_type_ids'] = arrays['token_type_ids'][i:i + 1, :length]
        rows.append({k: torch.as_tensor(v, dtype=torch.long, device=device)
                     for k, v in row.items()})
      times = []
      with torch.no_grad():
        for row in rows[:10]:
          model(**row)
        _sync(device)
        for row in rows:
          t = time.perf_counter()
          model(**row)
          _sync(device)
          times.append(time.perf_counter() - t)
      ms = np.asarray(times) * 1e3
      out[f'{name}_{dtype}'] = {
          'params': int(sum(p.numel() for p in model.parameters())),
          'examples': len(rows),
          'latency_ms': {'p50': float(np.percentile(ms, 50)),
                         'p90': float(np.percentile(ms, 90)),
                         'mean': float(ms.mean())},
          'examples_per_s': len(rows) / float(np.sum(times))}
      del model
  return out


def main(argv) -> int:
  spec = json.loads(argv[1])
  import torch
  if spec['device'] == 'cuda' and not torch.cuda.is_available():
    print(json.dumps({'skipped': 'torch has no CUDA device'}))
    return 0
  result = (train if spec['kind'] == 'train' else inference)(spec)
  print(json.dumps(result, default=str))
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
