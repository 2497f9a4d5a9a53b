"""What `replicate` keeps: small JSON files under --results, one per finished
piece of work, and the run facts that go into them.

    RESULTS/teacher.json          the head stage (with every build of it)
    RESULTS/distil/NAME.json      each variant's distillation
    RESULTS/glue/NAME/TASK.json   each model's GLUE task, seeds topped up
    RESULTS/runs/NAME/            a copy of each run's metrics.jsonl, config.json
    RESULTS/tables.md             the report

A piece is done when its JSON is there; each is written atomically
(`fs.write_text_atomic`), so an interrupted write leaves the old one or none.
"""

from __future__ import annotations

import json
import os
import platform
import shutil

from jaxdistil import fs
from jaxdistil import workdir as workdir_layout


class Results:
  """The JSON files under one --results folder."""

  def __init__(self, root: str):
    self.root = root

  def path(self, *parts) -> str:
    return os.path.join(self.root, *parts)

  def get(self, *parts):
    """The JSON at RESULTS/parts..., or None when that piece is not done."""
    path = self.path(*parts)
    if not os.path.isfile(path):
      return None
    with open(path) as f:
      return json.load(f)

  def put(self, value, *parts) -> None:
    path = self.path(*parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fs.write_text_atomic(path, json.dumps(value, indent=2, default=float) + '\n')

  def seeds_stored(self, name: str, task: str) -> int:
    """How many seeds of model `name` on `task` are stored."""
    r = self.get('glue', name, f'{task}.json')
    return len(r['per_seed']) if r else 0

  def glue(self, name: str, tasks) -> dict:
    """{task: its stored result} for model `name`'s finished tasks."""
    got = {t: self.get('glue', name, f'{t}.json') for t in tasks}
    return {t: r for t, r in got.items() if r}


def machine() -> dict:
  """The CPU (or accelerator) and the float32 matmul rate measured now."""
  import jax
  from jaxdistil import flops
  cpu = platform.processor() or ''
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f
                  if line.startswith('model name')), cpu)
  except OSError:
    pass
  return {'cpu': cpu, 'cores': os.cpu_count(),
          'devices': f'{jax.device_count()} x {jax.devices()[0].device_kind}',
          'matmul_gflops': round(flops.matmul_rate('float32', 1024, repeats=3) / 1e9, 1)}


def run_summary(workdir: str) -> dict:
  """Steps, real tokens, wall time and the last evaluation, from a run's
  metrics.jsonl (a resumed run's repeated steps counted once)."""
  rows = {}
  with open(workdir_layout.path(workdir, workdir_layout.METRICS)) as f:
    for line in f:
      row = json.loads(line)
      rows[row['step']] = row         # a resumed run rewrites its last steps
  steps = sorted(rows)
  last_eval = {}
  for s in steps:
    if any(k.startswith('eval/') for k in rows[s]):
      last_eval = {k: v for k, v in rows[s].items() if k.startswith('eval/')}
  return {'steps': steps[-1] if steps else 0,
          'real_tokens': int(sum(rows[s].get('tokens', 0) for s in steps)),
          'train_seconds': round(sum(rows[s].get('step_s', 0.0) for s in steps), 1),
          'final_loss': rows[steps[-1]]['loss'] if steps else None,
          'heldout': last_eval}


def keep_run(results: Results, name: str, workdir: str) -> None:
  """A copy of the run's metrics and config, for plots and for readers."""
  folder = results.path('runs', name)
  os.makedirs(folder, exist_ok=True)
  for f in (workdir_layout.METRICS, workdir_layout.CONFIG):
    if os.path.isfile(os.path.join(workdir, f)):
      shutil.copyfile(os.path.join(workdir, f), os.path.join(folder, f))
