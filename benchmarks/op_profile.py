"""Where the fused step's time goes, per XLA op, from a profiler trace.

    python -m benchmarks.op_profile --config=configs/distilbert_base.py \
        --config.max_len=128 --config.batch_size=8 --config.micro_batches=1 \
        [--steps=2] [--top=25] [--json]

Builds the real step as `jaxdistil.bench` does (random teacher weights, random
full-length rows), runs it under `jax.profiler.trace`, and reads the trace's
per-op events back (the XSpace protobuf that TensorFlow ships). Each executed
HLO op is put in a part of the step, from the op's `op_name` metadata:

- teacher forward: the un-differentiated model;
- student forward / student backward: the model under `jvp` / `transpose(jvp)`;
- losses: ops of the losses, forward and backward (outside the model);
- optimizer and other: the rest (AdamW, clipping, counting tokens).

and in a kind: `matmul` when the op's fused computation holds a dot or a
convolution, else `other` (elementwise, reductions, copies).

On the CPU the figures are thread-seconds: the sum of the traced ops' times
on all the runtime's threads, divided by the steps. `--config` takes the same
overrides as `jaxdistil.bench`. What the trace cannot tell: when a library
kernel (YNNPACK, oneDNN) splits one op over the thread pool, the helper threads
record no event, so thread-busy fractions undercount the work it did. The
split between parts and kinds is what this is for.
"""

from __future__ import annotations

from jaxdistil import host_memory

if __name__ == '__main__':
  host_memory.keep_freed_memory()

import collections
import glob
import json
import re
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

PARTS = ('teacher forward', 'student forward', 'student backward', 'losses',
         'optimizer and other')


def part_of(op_name: str) -> str:
  """The step's part an HLO op belongs to, from its `op_name` metadata."""
  in_model = 'MaskedLM' in op_name
  if in_model and 'transpose(' in op_name:
    return 'student backward'
  if in_model and 'jvp(' in op_name:
    return 'student forward'
  if in_model:
    return 'teacher forward'
  if 'jvp(' in op_name or 'transpose(' in op_name:
    return 'losses'
  return 'optimizer and other'


def hlo_index(hlo_text: str) -> tuple[dict, dict]:
  """{instruction: op_name} and {instruction: 'matmul' | 'other'} from the
  compiled module's text."""
  body_has_dot, current = {}, None
  for line in hlo_text.splitlines():
    head = re.match(r'^(?:ENTRY )?%(\S+) ', line)
    if head and line.rstrip().endswith('{'):
      current = head.group(1)
      body_has_dot[current] = False
    elif current and re.search(r' (dot|convolution)\(', line):
      body_has_dot[current] = True
  op_names, kinds = {}, {}
  for m in re.finditer(r'^\s*(?:ROOT )?%(\S+) = .*$', hlo_text, re.M):
    line = m.group(0)
    name = m.group(1)
    meta = re.search(r'op_name="([^"]*)"', line)
    op_names[name] = meta.group(1) if meta else ''
    calls = re.search(r'calls=%([\w.\-]+)', line)
    is_dot = (re.search(r' (dot|convolution)\(', line) is not None
              or (calls is not None and body_has_dot.get(calls.group(1), False)))
    kinds[name] = 'matmul' if is_dot else 'other'
  return op_names, kinds


def read_trace(directory: str) -> list[tuple[str, str, float]]:
  """(thread, event name, seconds) of every event in a profiler trace."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  files = glob.glob(f'{directory}/**/*.xplane.pb', recursive=True)
  if not files:
    raise RuntimeError(f'no trace was written under {directory}')
  space = xplane_pb2.XSpace()
  with open(files[0], 'rb') as f:
    space.ParseFromString(f.read())
  events = []
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      for ev in line.events:
        events.append((line.name, names.get(ev.metadata_id, ''),
                       ev.duration_ps * 1e-12))
  return events


def summarize(events, op_names: dict, kinds: dict, steps: int,
              step_s: float, top: int) -> dict:
  """Thread-seconds per step by part and kind, and the costliest ops."""
  by_part = collections.Counter()
  by_op = collections.Counter()
  for thread, name, seconds in events:
    if name not in op_names:        # runtime bookkeeping, Python, waits
      continue
    op = re.sub(r'layer_\d+', 'layer_N', op_names[name]) or name
    by_part[(part_of(op_names[name]), kinds[name])] += seconds / steps
    by_op[(kinds[name], op)] += seconds / steps
  total = sum(by_part.values())
  table = {part: {kind: by_part[(part, kind)] for kind in ('matmul', 'other')}
           for part in PARTS}
  return {
      'step_s': step_s,
      'op_thread_s_per_step': total,
      'parts': table,
      'matmul_share': sum(v for (_, k), v in by_part.items() if k == 'matmul')
                      / max(total, 1e-12),
      'top_ops': [{'kind': k, 'op': op, 'thread_s': s}
                  for (k, op), s in by_op.most_common(top)],
  }


def profile(config, steps: int, top: int) -> dict:
  from jaxdistil import build
  from jaxdistil.data import synthetic
  config.teacher = 'random'
  run = build.build(config)
  batch = jax.device_put(synthetic.random_batch(
      np.random.default_rng(config.seed), config.batch_size, config.max_len,
      run.step_config.student.vocab_size, full_length=True), run.batch_sharding)
  compiled = run.train_step.lower(run.abstract_state, run.teacher_params,
                                  batch).compile()
  op_names, kinds = hlo_index(compiled.as_text())
  state = run.state
  times = []
  for _ in range(2):                                     # warm-up, then timed
    t = time.perf_counter()
    state, _ = compiled(state, run.teacher_params, batch)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - t)
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d):
      for _ in range(steps):
        state, _ = compiled(state, run.teacher_params, batch)
        jax.block_until_ready(state)
    events = read_trace(d)
  out = summarize(events, op_names, kinds, steps, times[-1], top)
  out['device_kind'] = jax.devices()[0].device_kind
  return out


def report(r: dict) -> str:
  lines = [f"step {r['step_s']:.3f} s untraced; traced ops {r['op_thread_s_per_step']:.3f}"
           f" thread-s a step, {r['matmul_share']:.1%} of it in matmuls",
           f"{'part':22s} {'matmul':>9s} {'other':>9s}"]
  for part, kinds in r['parts'].items():
    lines.append(f"{part:22s} {kinds['matmul']:9.3f} {kinds['other']:9.3f}")
  lines.append('costliest ops (thread-s a step):')
  for o in r['top_ops']:
    lines.append(f"  {o['thread_s']:7.3f}  {o['kind']:6s}  {o['op']}")
  return '\n'.join(lines)


def main(argv):
  del argv
  if _CONFIG.value is None:
    raise app.UsageError('--config=configs/<name>.py is required')
  from jaxdistil.config_lib import ConfigError
  try:
    r = profile(_CONFIG.value.unlock(), _STEPS.value, _TOP.value)
  except ConfigError as e:
    print(f'benchmarks.op_profile: config error: {e}', file=sys.stderr)
    sys.exit(2)
  print(report(r), flush=True)
  if _JSON.value:
    print(json.dumps(r), flush=True)


if __name__ == '__main__':
  _CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.',
                                            lock_config=True)
  _STEPS = flags.DEFINE_integer('steps', 2, 'Traced steps.')
  _TOP = flags.DEFINE_integer('top', 25, 'How many of the costliest ops to list.')
  _JSON = flags.DEFINE_bool('json', False, 'Print one JSON object as the last line.')
  from jaxdistil.config_lib import flags_parser
  app.run(main, flags_parser=flags_parser('benchmarks.op_profile'))
