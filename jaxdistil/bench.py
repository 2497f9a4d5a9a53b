"""Benchmark the real distillation step at a config's size on random tokens.

    python -m jaxdistil.bench --config=configs/distilbert_base.py \
        --config.max_len=128 --config.batch_size=16 [--json] [--parts]

Builds the same sharded, jitted step that training runs (random teacher weights,
student initialised from them), then reports tokens/s, step time, compile time,
peak memory, model FLOPs per token (see `jaxdistil.flops` for the formula) and MFU
against the matmul rate it measures on the same devices in the same run (a square
float32 or bfloat16 matmul, best of several). `--parts` also times the step's parts
(teacher forward, student forward+backward with the losses, optimizer update) as
separate programs, to show where the time goes. With `--json` the last line is one
JSON object.

`--inference` times classifier inference over a GLUE split instead
(`jaxdistil.inference_bench`, which has its own flags: `--model`, `--task`, ...).

Over 300 lines on purpose: one command whose modes (the step, its parts,
--memory, real batches, the input pipeline) share the built run and its
measured matmul rate; each mode is one function.
"""

from __future__ import annotations

# Before jax is imported: glibc settings that stop the CPU backend from
# page-faulting its buffers in again on every step (see host_memory).
from jaxdistil import host_memory

if __name__ == '__main__':
  host_memory.keep_freed_memory()

import functools
import json
import resource
import sys
import time

import jax
import numpy as np
from absl import flags

from jaxdistil import build, cli, flops, losses, memory_fit
from jaxdistil.data import synthetic
from jaxdistil.config_lib import ConfigError
from jaxdistil.models import bert


def define_flags(fv) -> None:
  d = dict(flag_values=fv)
  cli.define_config(fv)
  flags.DEFINE_bool('json', False, 'print one JSON object as the last line', **d)
  flags.DEFINE_integer('steps', 5, 'timed steps (after one warm-up step)', **d)
  flags.DEFINE_bool('parts', False, 'also time the parts of the step', **d)
  flags.DEFINE_integer('matmul_size', 2048, 'size n of the n^3 matmul', **d)
  flags.DEFINE_bool('memory', False, 'only compile the step and print its '
                    'per-device memory (XLA memory analysis)', **d)
  flags.DEFINE_string('input', None, 'a prepared data directory: also measure '
                      'the tokens/s the input pipeline delivers', **d)
  flags.DEFINE_float('input_seconds', 10.0, 'how long to draw batches from '
                     '--input', **d)
  flags.DEFINE_string(
      'data', None, 'a prepared data directory: time the step on its real '
      'batches (packed or not, as --config.packing says) instead of random '
      'full-length rows, and report real (non-padding) tokens/s', **d)
  flags.DEFINE_bool('inference', False, 'time classifier inference instead '
                    '(jaxdistil.inference_bench: --inference --help lists its '
                    'flags)', **d)


def real_batches(config, directory: str):
  """The training pipeline over `directory`, as `train` builds it from the
  config (packing, masking, max_len), for one process."""
  from jaxdistil.data import batches
  c = config.copy_and_resolve_references()
  c.data = directory
  data = batches.make_data(c, None)
  data.check_vocab_size(c.model.teacher.vocab_size)
  return data


def input_rate(config, directory: str, seconds: float) -> dict:
  """Tokens/s (padded and real) the input pipeline yields, after a warm-up,
  and the share of padding in its batches."""
  p = real_batches(config, directory)
  next(p)
  batches = real = 0
  start = time.perf_counter()
  while time.perf_counter() - start < seconds:
    b = next(p)
    batches += 1
    real += int(b['attention_mask'].sum())
  elapsed = time.perf_counter() - start
  p.close()
  rows, length = b['input_ids'].shape
  total = batches * rows * length
  return {'input_tokens_per_s': total / elapsed,
          'input_real_tokens_per_s': real / elapsed,
          'input_padding_fraction': 1.0 - real / total,
          'input_max_len': length, 'input_packing': bool(config.packing)}


matmul_rate = flops.matmul_rate


def _timed(fn, *args, repeats: int):
  out = fn(*args)
  jax.block_until_ready(out)
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t)
  return best


def time_parts(run: build.Run, state, batch, repeats: int) -> dict:
  """Seconds for each part of the step, each compiled on its own."""
  cfg = run.step_config

  def teacher_forward(t, b):
    out = bert.apply(cfg.teacher, t, b['input_ids'], b['attention_mask'],
                     b.get('token_type_ids'))
    return out.logits, out.hidden_states[-1]

  def student_grads(p, t_logits, t_hidden, b):
    def loss_fn(p):
      out = bert.apply(cfg.student, p, b['input_ids'], b['attention_mask'])
      parts = losses.terms(out, bert.BertOutput(t_logits, (t_hidden,)), b,
                           cfg.loss)
      counts = losses.counts(b, cfg.loss)
      return losses.total({k: s for k, (s, _) in parts.items()}, counts, cfg.loss)
    return jax.grad(loss_fn)(p)

  def student_forward(p, b):
    return bert.apply(cfg.student, p, b['input_ids'], b['attention_mask']).logits

  result = {}
  t_fn = jax.jit(teacher_forward)
  result['teacher_forward_s'] = _timed(t_fn, run.teacher_params, batch,
                                       repeats=repeats)
  t_logits, t_hidden = t_fn(run.teacher_params, batch)
  result['student_forward_s'] = _timed(jax.jit(student_forward), state.params,
                                       batch, repeats=repeats)
  g_fn = jax.jit(student_grads)
  result['student_forward_backward_losses_s'] = _timed(
      g_fn, state.params, t_logits, t_hidden, batch, repeats=repeats)
  grads = g_fn(state.params, t_logits, t_hidden, batch)
  tx = run.tx
  u_fn = jax.jit(lambda g, o, p: tx.update(g, o, p))
  result['optimizer_update_s'] = _timed(u_fn, grads, state.opt_state, state.params,
                                        repeats=repeats)
  return result


def benchmark(config, steps: int, parts: bool = False, matmul_n: int = 2048,
              data: str | None = None, packed: bool = False) -> dict:
  """Time the step on one random full-length batch (`packed`: random packed
  rows, with segment and position ids), or with `data` on real batches of a
  prepared directory (a new batch each step, drawn beforehand)."""
  config.teacher = 'random'          # random weights: speed does not depend on them
  run = build.build(config)
  cfg = run.step_config
  b, length = config.batch_size, config.max_len
  if data:
    source = real_batches(config, data)
    batches = [jax.device_put(next(source), run.batch_sharding)
               for _ in range(steps + 1)]
    source.close()
  else:
    rng = np.random.default_rng(config.seed)
    make = (synthetic.random_packed_batch if packed else functools.partial(
        synthetic.random_batch, full_length=True))
    batches = [jax.device_put(make(rng, b, length, cfg.student.vocab_size),
                              run.batch_sharding)]
  batch = batches[0]

  # The machine's matmul rate drifts; take the best of a measurement before and
  # one after the timed steps, so MFU is judged against the best it reached.
  mm_before = matmul_rate(config.dtype, matmul_n)
  t = time.perf_counter()
  compiled = run.train_step.lower(run.abstract_state, run.teacher_params,
                                  batch).compile()
  compile_s = time.perf_counter() - t
  memory_fit.check(compiled, config, 'the benchmarked step')   # one line if not
  memory = compiled.memory_analysis()

  state = run.state
  state, metrics = compiled(state, run.teacher_params, batch)   # warm-up
  jax.block_until_ready(state)
  times, real = [], 0
  usage0 = resource.getrusage(resource.RUSAGE_SELF)
  for i in range(steps):
    timed = batches[(i + 1) % len(batches)]
    t = time.perf_counter()
    state, metrics = compiled(state, run.teacher_params, timed)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - t)
    real += int(metrics['tokens'])
  step_s = float(np.median(times))
  usage1 = resource.getrusage(resource.RUSAGE_SELF)

  mm_rate = max(mm_before, matmul_rate(config.dtype, matmul_n))
  # MFU against a known chip's published peak where there is one (bfloat16 on
  # a TPU or a data-centre GPU), else against the matmul measured here.
  known = flops.known_peak(jax.devices()[0].device_kind, config.dtype)
  teacher = cfg.teacher if cfg.loss.needs_teacher else None
  per_token = flops.distill_step(teacher, cfg.student, length)
  tokens_per_s = b * length / step_s
  n_dev = len(run.mesh.devices.flat)
  result = {
      'devices': n_dev,
      'device_kind': jax.devices()[0].device_kind,
      'platform': jax.devices()[0].platform,
      'mesh': dict(run.mesh.shape),
      'dtype': config.dtype,
      'batch_size': b, 'max_len': length, 'micro_batches': config.micro_batches,
      'teacher_layers': cfg.teacher.num_layers, 'student_layers': cfg.student.num_layers,
      'tokens_per_s': tokens_per_s,
      # Non-padding tokens over the timed steps' total time: the work done.
      'real_tokens_per_s': real / sum(times),
      'padding_fraction': 1.0 - real / (steps * b * length),
      'data': data or ('random packed rows' if packed
                       else 'random full-length rows'),
      'packing': bool(config.packing) if data else (True if packed else None),
      'step_s': step_s,
      'step_s_min': float(min(times)),
      'compile_s': compile_s,
      'flops_per_token': per_token,
      'matmul_flops_per_s': mm_rate * n_dev,
      'mfu': tokens_per_s * per_token / ((known or mm_rate) * n_dev),
      'peak_flops_per_device': known or mm_rate,
      'peak_source': 'published' if known else 'measured matmul',
      'peak_host_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      'compiled_temp_bytes': getattr(memory, 'temp_size_in_bytes', None),
      'compiled_argument_bytes': getattr(memory, 'argument_size_in_bytes', None),
      'compiled_output_bytes': getattr(memory, 'output_size_in_bytes', None),
      'host_user_s_per_step': (usage1.ru_utime - usage0.ru_utime) / steps,
      'host_sys_s_per_step': (usage1.ru_stime - usage0.ru_stime) / steps,
      'page_faults_per_step': (usage1.ru_minflt - usage0.ru_minflt) / steps,
      'host_memory_kept': host_memory.applied(),
      'loss': float(metrics['loss']),
  }
  if parts:
    result['parts'] = time_parts(run, state, batch, repeats=max(2, steps // 2))
  return result


def saved_bytes(cfg: bert.BertConfig, rows: int, length: int) -> int:
  """Bytes the student's backward pass keeps from its forward (the residuals
  of `jax.vjp`, traced with `jax.eval_shape`: nothing runs), for `rows` rows
  of `length` tokens with dropout on. This is what `model.remat` and the
  attention kernel change, on any backend; XLA's CPU memory analysis does not
  show it (see BENCHMARKS.md)."""
  params = jax.eval_shape(lambda: bert.init(cfg, jax.random.key(0)))
  ids = jax.ShapeDtypeStruct((rows, length), np.int32)

  def residuals(params, ids):
    def loss(p):
      out = bert.apply(cfg, p, ids, jax.numpy.ones_like(ids),
                       dropout_rng=jax.random.key(0))
      return out.logits.mean() + sum(h.mean() for h in out.hidden_states)
    return jax.tree.leaves(jax.vjp(loss, params)[1])

  def nbytes(s):
    if jax.dtypes.issubdtype(s.dtype, jax.dtypes.prng_key):
      return 8 * int(np.prod(s.shape))       # a threefry key: two uint32
    return int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize

  return sum(nbytes(s) for s in jax.eval_shape(residuals, params, ids))


def memory(config) -> dict:
  """Per-device memory of the compiled step (XLA's memory analysis), compiled
  for the devices JAX sees and the config's mesh, without running it."""
  config.teacher = 'random'
  run = build.build(config)
  batch = jax.eval_shape(lambda: synthetic.random_batch(
      np.random.default_rng(0), config.batch_size, config.max_len,
      run.step_config.student.vocab_size, full_length=True))
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                      sharding=run.batch_sharding),
                       batch)
  t = time.perf_counter()
  compiled = run.train_step.lower(run.abstract_state, run.teacher_params,
                                  batch).compile()
  compile_s = time.perf_counter() - t
  out = {
      'devices': len(run.mesh.devices.flat), 'mesh': dict(run.mesh.shape),
      'dtype': config.dtype, 'batch_size': config.batch_size,
      'max_len': config.max_len, 'micro_batches': config.micro_batches,
      'compile_s': compile_s, **memory_fit.step_bytes(compiled),
      'attention': {'teacher': run.step_config.teacher.attention,
                    'student': run.step_config.student.attention},
      'remat': run.step_config.student.remat}
  rows = config.batch_size // (config.micro_batches * run.mesh.shape['data']
                               * run.mesh.shape['fsdp'])
  out['student_saved_bytes_per_device'] = saved_bytes(
      run.step_config.student, max(rows, 1), config.max_len)
  return out


def _report(r: dict) -> str:
  gib = 2 ** 30
  lines = [
      f"devices      {r['devices']} x {r['device_kind']} ({r['platform']}), "
      f"mesh {r['mesh']}, {r['dtype']}",
      f"shape        batch {r['batch_size']} x length {r['max_len']}, "
      f"{r['micro_batches']} micro-batch(es); teacher {r['teacher_layers']} layers, "
      f"student {r['student_layers']}",
      f"compile      {r['compile_s']:.1f} s",
      f"step         {r['step_s']:.3f} s (median), {r['step_s_min']:.3f} s (best)",
      f"throughput   {r['tokens_per_s']:.1f} tokens/s, {r['real_tokens_per_s']:.1f} "
      f"real (padding {r['padding_fraction']:.1%}; {r['data']}"
      + (f", packing {'on' if r['packing'] else 'off'})" if r['packing'] is not None
         else ')'),
      f"model FLOPs  {r['flops_per_token'] / 1e6:.1f} MFLOP/token "
      f"(teacher fwd + 3 x student fwd)",
      f"matmul rate  {r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s measured",
      f"MFU          {r['mfu']:.3f} (of {r['peak_flops_per_device'] / 1e12:.2f} "
      f"TFLOP/s a device: {r['peak_source']})",
      f"memory       host peak RSS {r['peak_host_rss_bytes'] / gib:.2f} GiB; "
      f"compiled step temp {(r['compiled_temp_bytes'] or 0) / gib:.2f} GiB, "
      f"arguments {(r['compiled_argument_bytes'] or 0) / gib:.2f} GiB",
      f"host CPU     {r['host_user_s_per_step']:.2f} s user, "
      f"{r['host_sys_s_per_step']:.2f} s system, "
      f"{r['page_faults_per_step']:.0f} page faults per step",
  ]
  if 'input_tokens_per_s' in r:
    lines.append(f"input        {r['input_tokens_per_s']:.0f} tokens/s from the "
                 f"prepared shards ({r['input_real_tokens_per_s']:.0f} real, "
                 f"padding {r['input_padding_fraction']:.1%}), "
                 f"{r['input_over_step']:.0f}x what the step consumes")
  for k, v in r.get('parts', {}).items():
    lines.append(f"part         {k:36s} {v:.3f} s")
  return '\n'.join(lines)


def is_inference(argv) -> bool:
  return any(a in ('--inference', '--inference=true', '--inference=1')
             for a in argv)


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if is_inference(argv):                           # classifier inference
    from jaxdistil import inference_bench
    return inference_bench.main(argv)
  try:
    args = cli.parse('python -m jaxdistil.bench', __doc__, define_flags, argv,
                     config_flags=('config',))
    cli.require(args, 'config')
  except (cli.UsageError, ConfigError) as e:
    print(f'jaxdistil.bench: {e}', file=sys.stderr)
    return 2
  config = args.config.unlock()
  if args.memory:
    try:
      result = memory(config)
    except ConfigError as e:
      print(f'jaxdistil.bench: config error: {e}', file=sys.stderr)
      return 2
    gib = 2 ** 30
    print(f"mesh {result['mesh']}: per device {result['total_bytes_per_device'] / gib:.2f}"
          f" GiB (arguments {result['argument_bytes'] / gib:.2f}, temporaries "
          f"{result['temp_bytes'] / gib:.2f}); compile {result['compile_s']:.1f} s; "
          f"the student's backward keeps {result['student_saved_bytes_per_device'] / gib:.2f}"
          f" GiB (attention {result['attention']['student']}, remat {result['remat']})")
    if args.json:
      print(json.dumps(result), flush=True)
    return 0
  try:
    result = benchmark(config, args.steps, args.parts, args.matmul_size,
                       data=args.data)
    if args.input:
      result.update(input_rate(config, args.input, args.input_seconds))
      result['input_over_step'] = (result['input_tokens_per_s']
                                   / result['tokens_per_s'])
  except ConfigError as e:
    print(f'jaxdistil.bench: config error: {e}', file=sys.stderr)
    return 2
  except ValueError as e:           # unusable prepared data (InputError)
    print(f'jaxdistil.bench: {e}', file=sys.stderr)
    return 2
  print(_report(result), flush=True)
  if args.json:
    print(json.dumps(result), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
