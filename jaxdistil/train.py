"""`python -m jaxdistil.train --config=configs/<name>.py --workdir=DIR`.

Reads top to bottom: the config, the models, mesh and jitted step (`build`),
the data, restore-or-init, the loop (step, log, evaluate, checkpoint), export.
Rerunning the same command on the same workdir resumes from its latest
checkpoint, parameters, optimizer state, RNG and data position included, and
ends where an uninterrupted run would. SIGTERM (a TPU preemption) saves at the
current step and exits with status 0.

`config.data` is a directory made by `python -m jaxdistil.prepare`, or
`synthetic` (random masked batches drawn from (seed, step): smoke tests and
benchmarks without a corpus). What the workdir holds is `jaxdistil.workdir`'s.
"""

from __future__ import annotations

from jaxdistil import host_memory

if __name__ == '__main__':
  host_memory.keep_freed_memory()     # before jax starts its threads

import os
import signal
import sys

import jax
import jax.numpy as jnp
from absl import flags

from jaxdistil import (build, checkpoint, cli, distributed, flops, fs,
                       memory_fit, sharding, workdir as layout)
from jaxdistil.config_lib import ConfigError
from jaxdistil.convert import ConvertError, export_student
from jaxdistil.data.batches import make_data, schedule_epochs
from jaxdistil.metrics_writer import Writer
from jaxdistil.step import summarize_eval
from jaxdistil import train_log
from jaxdistil.train_log import StepLog, TrainError

def evaluate(run, config, params) -> dict:
  """Means over `config.eval_batches` held-out batches (the same every time),
  summed on the devices and fetched once."""
  data = make_data(config, None, split='eval')
  total = None
  for _ in range(config.eval_batches):
    batch = sharding.global_batch(next(data), run.mesh)
    sums = run.eval_step(params, run.eval_teacher_params, batch)
    total = sums if total is None else jax.tree.map(jnp.add, total, sums)
  if hasattr(data, 'close'):
    data.close()
  return summarize_eval(train_log.fetch(total))


def tokenizer_source(run, config) -> str | None:
  """The folder whose tokenizer files go with the student: the teacher's, else
  the one `prepare` saved beside the data."""
  if run.teacher_tokenizer:
    return run.teacher_tokenizer
  if config.data and config.data != 'synthetic':
    folder = os.path.join(config.data, 'tokenizer')
    if os.path.isdir(folder):
      return folder
  return None


def train(config, workdir: str) -> dict:
  """Train (or resume) `config` in `workdir`; `config` itself is not changed
  (the result's 'config' is the one run: epochs and the teacher's shape in)."""
  config = config.copy_and_resolve_references()
  # ---- data first: with num_epochs it sets the schedule's length ------------
  data = make_data(config, None)
  schedule_epochs(config, data)

  # ---- models, mesh, sharded state shapes and the jitted steps --------------
  run = build.build(config)
  config = run.config                       # with the loaded teacher's shape
  if hasattr(data, 'check_vocab_size'):     # the teacher may set the vocabulary
    # Its tokenizer first: that line also names the command that fixes it.
    data.check_tokenizer(run.teacher_tokenizer)
    data.check_vocab_size(config.model.teacher.vocab_size)

  # ---- restore this workdir's latest checkpoint, or start fresh -------------
  fs.makedirs(workdir)
  mgr = checkpoint.manager(workdir)
  restored = checkpoint.restore(mgr, run.abstract_state, run.state_shardings)
  if restored is not None:
    state, position, start = restored
    data.position = dict(position)
  else:
    state, start = run.init_state(), 0
  if jax.process_index() == 0:
    layout.describe(workdir, run.step_config.student, run.step_config.teacher,
                    config.teacher, config.to_json_best_effort(indent=2),
                    tokenizer_source(run, config))

  # ---- preemption: SIGTERM saves where we are and exits cleanly -------------
  # (Restored when `train` returns: a caller running other stages after it,
  # such as replicate, must still die of a SIGTERM there.)
  stop = {'now': False}
  previous_handler = signal.signal(signal.SIGTERM,
                                   lambda *_: stop.update(now=True))

  # ---- the loop --------------------------------------------------------------
  # Metrics stay on the devices and are fetched every `log_every` steps (and
  # before every evaluation and checkpoint), so the host never waits for a step
  # before it queues the next. A non-finite loss is therefore seen within
  # log_every steps of happening, and always before a checkpoint is written.
  writer = Writer(workdir)
  teacher = run.step_config.teacher if run.teacher_params is not None else None
  log = StepLog(config, writer, workdir,
                tokens_per_step=config.batch_size * config.max_len,
                flops_per_step=config.batch_size * config.max_len * flops.distill_step(
                    teacher, run.step_config.student, config.max_len),
                peak_flops=flops.peak_flops(config), last_saved=start)
  bar = progress_bar(config.total_steps, start)
  end = min(config.stop_at or config.total_steps, config.total_steps)
  try:
    first = []
    if start < end:
      # Compiled before the first step on that step's batch, so that a step
      # that cannot fit in memory stops here, in one line, with nothing run.
      first = [sharding.global_batch(next(data), run.mesh)]
      train_step = memory_fit.compile_checked(
          run.train_step, (state, run.teacher_params, first[0]), config)
    for step in range(start, end):
      batch = first.pop() if first else sharding.global_batch(next(data), run.mesh)
      state, step_metrics = train_step(state, run.teacher_params, batch)
      done = step + 1
      log.add(done, step_metrics)
      bar.update(1)

      stopping = stop['now']    # read once: a signal from here on waits a step
      evaluate_now = config.eval_every and (done % config.eval_every == 0
                                            or done == config.total_steps)
      save_now = done % config.checkpoint_every == 0 or done == end or stopping
      if evaluate_now:
        log.flush(evaluate=lambda: evaluate(run, config, state.params))
      elif save_now or done % config.log_every == 0:
        log.flush()
      if log.last:
        bar.set_postfix(loss=f'{log.last["loss"]:.3f}', refresh=False)

      if save_now:
        try:
          checkpoint.save(mgr, done, state, data.position)
        except Exception as e:  # a full disk: earlier checkpoints stay usable
          raise TrainError(checkpoint.save_failure(mgr, done, e)) from None
        log.last_saved = done
        writer.sync()
      if stopping:
        break
  finally:
    try:
      mgr.wait_until_finished()       # an asynchronous save's error surfaces here
    except Exception as e:
      raise TrainError(checkpoint.save_failure(mgr, log.last_saved, e)) from None
    finally:
      writer.close()
      if hasattr(data, 'close'):
        data.close()
      bar.close()   # ends its line, so an error below starts a fresh one
      if previous_handler is not None:
        signal.signal(signal.SIGTERM, previous_handler)

  # ---- a complete run: the student as a Hugging Face directory --------------
  hf = None
  if log.last_saved == config.total_steps and jax.process_index() == 0:
    try:
      hf = export_student(workdir, run.step_config.student.replace(
          dtype='float32'), jax.device_get(state.params))
    except ConvertError as e:
      print(f'jaxdistil.train: warning: no HF export: {e}', file=sys.stderr)
    layout.mark_done(workdir, log.last_saved)
  return {'state': state, 'metrics': log.last, 'step': log.last_saved, 'hf': hf,
          'config': config, 'preempted': stop['now']}


def progress_bar(total: int, start: int):
  """tqdm on process 0 (disabled on the others)."""
  from tqdm import tqdm
  return tqdm(total=total, initial=start, desc='train', unit=' steps',
              file=sys.stderr, disable=jax.process_index() != 0)


def last_checkpoint(workdir: str) -> str:
  step = layout.latest_step(workdir)
  return (f'the last checkpoint is step {step} in {layout.checkpoints(workdir)}'
          if step is not None else f'no checkpoint in {workdir} yet')


def define_flags(fv) -> None:
  d = dict(flag_values=fv)
  cli.define_config(fv)
  flags.DEFINE_string('workdir', None, 'checkpoints and metrics go here', **d)
  flags.DEFINE_string(
      'coordinator_address', None, 'host:port of process 0, for multi-process '
      'runs outside Cloud TPU (GPU clusters, several processes on one '
      'machine)', **d)
  flags.DEFINE_integer('num_processes', None, 'processes in a multi-process run',
                       **d)
  flags.DEFINE_integer('process_id', None, "this process's index", **d)
  flags.DEFINE_integer('distributed_timeout', 300, 'seconds to wait for every '
                       'process to join', **d)
  flags.DEFINE_integer(
      'heartbeat_timeout', 100, 'seconds without heartbeats after which JAX '
      'takes a process of a multi-process run for lost and ends the others',
      **d)


def main(argv=None) -> int:
  try:
    args = cli.parse('python -m jaxdistil.train', __doc__, define_flags, argv,
                     config_flags=('config',))
    cli.require(args, 'config', 'workdir')
    distributed.initialize(args.coordinator_address, args.num_processes,
                           args.process_id, args.distributed_timeout,
                           args.heartbeat_timeout)
  except (cli.UsageError, ConfigError, ValueError, OSError) as e:
    print(f'jaxdistil.train: {e}', file=sys.stderr)
    return 2
  watch = distributed.PeerWatch(lambda: last_checkpoint(args.workdir))
  try:
    result = train(args.config, args.workdir)
    distributed.leave_together(watch)
  except (ConfigError, TrainError, checkpoint.CheckpointError, ValueError,
          OSError) as e:
    watch.stop()
    print(f'jaxdistil.train: {e}', file=sys.stderr)
    return 2
  if jax.process_index() == 0:
    print(f'jaxdistil.train: step {result["step"]}, loss '
          f'{result["metrics"].get("loss", float("nan")):.4f}'
          + (f'; student exported to {result["hf"]}' if result['hf'] else ''))
  return 0


if __name__ == '__main__':
  sys.exit(main())
