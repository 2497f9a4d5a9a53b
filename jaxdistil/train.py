"""`python -m jaxdistil.train --config=configs/<name>.py --workdir=DIR`.

Reads top to bottom: config, mesh and models (`build`), data, restore-or-init,
then the loop (step, metrics, checkpoint). Rerunning the same command on the
same workdir resumes from its latest checkpoint, parameters, optimizer state,
RNG and data position included, and ends where an uninterrupted run would.
SIGTERM (a TPU preemption) saves at the current step and exits with status 0.

`config.data` is a directory made by `python -m jaxdistil.prepare`, or
`synthetic` (random masked batches drawn from (seed, step): smoke tests and
benchmarks without a corpus).
"""

from __future__ import annotations

from jaxdistil import host_memory

if __name__ == '__main__':
  host_memory.keep_freed_memory()     # before jax starts its threads

import json
import os
import shutil
import signal
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jaxdistil import build, checkpoint, flops, fs, memory_fit, sharding
from jaxdistil.metrics_writer import Writer
from jaxdistil.inputs import SyntheticData, make_data, schedule_epochs
from jaxdistil.config_lib import ConfigError
from jaxdistil.step import summarize_eval

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints and metrics go here.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for multi-process runs '
    'outside Cloud TPU (GPU clusters, several processes on one machine).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None,
                                      'Processes in a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process\'s index.')
_INIT_TIMEOUT = flags.DEFINE_integer(
    'distributed_timeout', 300, 'Seconds to wait for every process to join.')


class TrainError(RuntimeError):
  """A run that cannot go on; one line names the problem."""


def fetch(tree):
  """Device -> host: the one way train reads values back (counted in tests)."""
  return jax.device_get(tree)


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
  return summarize_eval(fetch(total))


def check_finite(row: dict, step: int, skips: dict, config, last_saved: int,
                 workdir: str) -> None:
  """Stop (TrainError, one line) on a non-finite loss, or on more skipped
  non-finite steps in a row than `max_skipped_steps`; count the skips."""
  if row.get('skipped'):
    skips['total'] += 1
    skips['in_a_row'] += 1
    if skips['in_a_row'] > config.max_skipped_steps:
      raise TrainError(f'{skips["in_a_row"]} non-finite steps in a row up to step '
                       f'{step}: stopped; the last good checkpoint is step '
                       f'{last_saved} in {workdir}/checkpoints')
  elif not np.isfinite(row['loss']):
    raise TrainError(f'non-finite loss {row["loss"]} at step {step}: stopped; the '
                     f'last good checkpoint is step {last_saved} in '
                     f'{workdir}/checkpoints')
  else:
    skips['in_a_row'] = 0


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


def describe_workdir(run, config, workdir: str) -> None:
  """What `convert export` and GLUE need to read this workdir's checkpoints:
  model.json (the student's and teacher's shapes), config.json (the whole run)
  and tokenizer/ (copied, so the workdir stands on its own)."""
  if jax.process_index() != 0:
    return
  from jaxdistil.convert import model_dir
  from jaxdistil.convert.hf_out import copy_tokenizer
  meta = {'student': model_dir.config_to_dict(run.step_config.student),
          'teacher': model_dir.config_to_dict(run.step_config.teacher),
          'teacher_source': config.teacher,
          'layout': 'distilbert' if not run.step_config.student.type_vocab_size
                    else 'bert'}
  for name, text in ((model_dir.WORKDIR_FILE, json.dumps(meta, indent=2)),
                     ('config.json', config.to_json_best_effort(indent=2))):
    fs.write_text_atomic(fs.join(workdir, name), text)
  source = tokenizer_source(run, config)
  if source:
    folder = fs.join(workdir, 'tokenizer')
    fs.makedirs(folder)
    if fs.is_remote(folder):
      from jaxdistil.convert.hf_files import TOKENIZER_FILES
      for name in TOKENIZER_FILES:
        if fs.isfile(fs.join(source, name)):
          fs.copy_file(fs.join(source, name), fs.join(folder, name))
    else:
      copy_tokenizer(source, folder)


def export_student(run, config, state, workdir: str) -> str | None:
  """The final student as a Hugging Face directory, DIR/hf (process 0).

  `convert.export` writes local files: for a remote workdir it writes to a
  local temp dir (with the workdir's tokenizer copied down), and the files are
  then uploaded to DIR/hf, replacing the old ones there.
  """
  if jax.process_index() != 0:
    return None
  from jaxdistil import convert
  out = fs.join(workdir, 'hf')
  tok = fs.join(workdir, 'tokenizer')
  params = jax.device_get(state.params)
  cfg = run.step_config.student.replace(dtype='float32')
  staging = tempfile.mkdtemp(prefix='jaxdistil-hf-') if fs.is_remote(out) else None
  try:
    target = out
    if staging:
      target = os.path.join(staging, 'hf')
      local_tok = os.path.join(staging, 'tokenizer')
      if fs.isdir(tok):
        fs.copy_tree(tok, local_tok)
      tok = local_tok
    convert.export(cfg, params, target, tokenizer_dir=tok if fs.isdir(tok) else None,
                   overwrite=True)
    if staging:
      fs.copy_tree_up(target, out)
  except convert.ConvertError as e:
    print(f'jaxdistil.train: warning: no HF export: {e}', file=sys.stderr)
    return None
  finally:
    if staging:
      shutil.rmtree(staging, ignore_errors=True)
  return out


def peak_flops(config) -> float:
  """FLOP/s the devices can do: `config.peak_flops_per_device` when set, else
  measured once (a matmul in the compute dtype on one device)."""
  per_device = config.peak_flops_per_device
  if not per_device:
    per_device = flops.matmul_rate(config.dtype, 1024, repeats=4)
  return per_device * jax.device_count()


def train(config, workdir: str) -> dict:
  """Train (or resume) `config` in `workdir`; `config` itself is not changed
  (the result's 'config' is the one run: epochs and the teacher's shape in)."""
  config = config.copy_and_resolve_references()
  # ---- data first: with num_epochs it sets the schedule's length ------------
  data = make_data(config, None)
  schedule_epochs(config, data)

  # ---- models, mesh, sharded state and the jitted step ----------------------
  run = build.build(config)
  config = run.config                       # with the loaded teacher's shape
  if hasattr(data, 'check_vocab_size'):     # the teacher may set the vocabulary
    data.check_vocab_size(config.model.teacher.vocab_size)
  fs.makedirs(workdir)
  mgr = checkpoint.manager(workdir)

  # ---- restore (this workdir's latest checkpoint) or start fresh ------------
  restored = checkpoint.restore(mgr, run.abstract_state, run.state_shardings)
  if restored is not None:
    state, position, start = restored
    data.position = dict(position)
  else:
    state, start = run.init_state(), 0
  describe_workdir(run, config, workdir)

  # ---- preemption: SIGTERM saves where we are and exits cleanly -------------
  stop = {'now': False}
  signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))

  # ---- the loop --------------------------------------------------------------
  # Metrics stay on the devices and are fetched every `log_every` steps (and
  # before every evaluation and checkpoint), so the host never waits for a step
  # before it queues the next. A non-finite loss is therefore seen within
  # log_every steps of happening, and always before a checkpoint is written.
  writer = Writer(workdir)
  tokens_per_step = config.batch_size * config.max_len    # padding included
  flops_per_step = tokens_per_step * flops.distill_step(
      run.step_config.teacher if run.teacher_params is not None else None,
      run.step_config.student, config.max_len)
  peak = peak_flops(config)
  metrics, last_saved = {}, start
  skips = {'in_a_row': 0, 'total': 0}
  pending = []                      # (step, device metrics) not yet fetched
  bar = None
  if jax.process_index() == 0:
    from tqdm import tqdm
    bar = tqdm(total=config.total_steps, initial=start, desc='train',
               unit=' steps', file=sys.stderr)
  clock = {'t': time.perf_counter()}

  def flush(params=None) -> dict:
    """Fetch the pending steps' metrics in one transfer, check them, log them;
    with `params`, evaluate them (after the checks) with the last step's row.
    Step times are the window's mean: without a sync per step there is no
    time of one step."""
    if not pending:
      return {}
    fetched = fetch([m for _, m in pending])
    elapsed = (time.perf_counter() - clock['t']) / len(fetched)
    rows = []
    for (step, _), values in zip(pending, fetched):
      row = {k: float(v) for k, v in values.items()}
      check_finite(row, step, skips, config, last_saved, workdir)
      row.update(step_s=elapsed, tokens_per_s=tokens_per_step / elapsed,
                 real_tokens_per_s=row['tokens'] / elapsed,
                 mfu=flops_per_step / elapsed / peak)
      if config.nonfinite == 'skip':
        row['skipped_steps'] = skips['total']
      rows.append((step, row))
    if params is not None:
      rows[-1][1].update(evaluate(run, config, params))
    for step, row in rows:
      writer.write(step, row)
    pending.clear()
    clock['t'] = time.perf_counter()     # evaluation time is not step time
    if bar is not None:
      bar.set_postfix(loss=f'{rows[-1][1]["loss"]:.3f}')
    return rows[-1][1]

  try:
    end = min(config.stop_at, config.total_steps) if config.stop_at else (
        config.total_steps)
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
      pending.append((done, step_metrics))
      if bar is not None:
        bar.update(1)
      evaluate_now = config.eval_every and (done % config.eval_every == 0
                                            or done == config.total_steps)
      save_now = done % config.checkpoint_every == 0 or done == end or stop['now']
      if evaluate_now:
        metrics = flush(state.params)
      elif save_now or done % config.log_every == 0:
        metrics = flush() or metrics
      if save_now:
        try:
          checkpoint.save(mgr, done, state, data.position)
        except Exception as e:  # a full disk: earlier checkpoints stay usable
          raise TrainError(checkpoint.save_failure(mgr, done, e)) from None
        last_saved = done
        writer.sync()
      if stop['now']:
        break
  finally:
    try:
      mgr.wait_until_finished()       # an asynchronous save's error surfaces here
    except Exception as e:
      raise TrainError(checkpoint.save_failure(mgr, last_saved, e)) from None
    finally:
      writer.close()
      if hasattr(data, 'close'):
        data.close()
      if bar is not None:
        bar.close()   # ends its line, so an error below starts a fresh one
  hf = None
  if last_saved == config.total_steps:
    hf = export_student(run, config, state, workdir)
    if jax.process_index() == 0:
      # The run is complete: launch/babysit.sh stops re-creating the TPU on this.
      fs.write_text(fs.join(workdir, 'DONE'), f'{last_saved}\n')
  return {'state': state, 'metrics': metrics, 'step': last_saved, 'hf': hf,
          'config': config}


def init_distributed() -> None:
  """Join the other processes of a multi-process run, before JAX's backend starts.

  Explicit flags (a GPU cluster, or several CPU processes on one machine, which
  then use gloo collectives) win; on a Cloud TPU VM (libtpu installed) JAX finds
  its workers by itself; otherwise this is one process.
  """
  given = [f for f in (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
           if f is not None]
  if given:
    if len(given) != 3:
      raise ConfigError('a multi-process run needs all of --coordinator_address, '
                        '--num_processes and --process_id')
    if os.environ.get('JAX_PLATFORMS', '') == 'cpu' or not _has_accelerator_plugin():
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value,
                               initialization_timeout=_INIT_TIMEOUT.value)
  elif _on_cloud_tpu():
    jax.distributed.initialize(initialization_timeout=_INIT_TIMEOUT.value)


def _has_accelerator_plugin() -> bool:
  import importlib.util
  return any(importlib.util.find_spec(m) is not None
             for m in ('libtpu', 'jax_cuda12_plugin', 'jax_cuda13_plugin'))


def _on_cloud_tpu() -> bool:
  import importlib.util
  return (importlib.util.find_spec('libtpu') is not None
          and os.environ.get('JAX_PLATFORMS', 'tpu') in ('', 'tpu'))


def main(argv):
  del argv
  if _CONFIG.value is None or not _WORKDIR.value:
    raise app.UsageError('--config=configs/<name>.py and --workdir=DIR are required')
  try:
    init_distributed()
    result = train(_CONFIG.value, _WORKDIR.value)
  except (ConfigError, TrainError, checkpoint.CheckpointError, ValueError,
          OSError) as e:
    print(f'jaxdistil.train: {e}', file=sys.stderr)
    sys.exit(2)
  if jax.process_index() == 0:
    print(f'jaxdistil.train: step {result["step"]}, loss '
          f'{result["metrics"].get("loss", float("nan")):.4f}'
          + (f'; student exported to {result["hf"]}' if result['hf'] else ''))


if __name__ == '__main__':
  from jaxdistil.config_lib import flags_parser
  app.run(main, flags_parser=flags_parser('jaxdistil.train'))
