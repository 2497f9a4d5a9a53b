"""Multi-process training on one machine: 2 processes x 4 CPU devices (gloo
collectives through `jax.distributed`) against 1 process x 8 devices.

Same config, same global batches: the parameters agree within float32
round-off (the cross-process all-reduce sums in another order), and a
checkpoint written by either layout resumes in the other, and in a process
of yet another device count, to the same end. Every process runs under a
time limit, so a hung collective fails the test instead of hanging CI.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

# End-to-end runs (subprocesses, whole trainings): the full suite only.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_S = 240
RTOL = 1e-5


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def command(workdir, *extra):
  return [sys.executable, '-m', 'jaxdistil.train', '--config=configs/tiny.py',
          f'--workdir={workdir}', '--config.data=synthetic', '--config.batch_size=32',
          '--config.total_steps=8', '--config.checkpoint_every=100',
          '--config.eval_every=0', *extra]


def env(devices):
  return dict(os.environ, JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')


def run_single(workdir, devices, *extra):
  r = subprocess.run(command(workdir, *extra), cwd=ROOT, env=env(devices),
                     capture_output=True, text=True, timeout=LIMIT_S)
  assert r.returncode == 0, r.stderr[-3000:]
  return r


def run_two_processes(workdir, *extra):
  port = free_port()
  procs = [subprocess.Popen(
      command(workdir, f'--coordinator_address=localhost:{port}',
              '--num_processes=2', f'--process_id={i}', '--distributed_timeout=60',
              *extra),
      cwd=ROOT, env=env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(2)]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=LIMIT_S))
  except subprocess.TimeoutExpired:
    for p in procs:
      p.kill()
    pytest.fail(f'a 2-process run did not finish within {LIMIT_S} s (hung collective?)')
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


def params_at(workdir, step):
  """Params and data position of a checkpoint, as host numpy arrays (whatever
  the topology that wrote it)."""
  step_dir = os.path.join(workdir, 'checkpoints', str(step))
  ckpt = ocp.PyTreeCheckpointer()
  meta = ckpt.metadata(os.path.join(step_dir, 'state')).item_metadata.tree
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
  state = ckpt.restore(os.path.join(step_dir, 'state'),
                       args=ocp.args.PyTreeRestore(restore_args=as_numpy))
  with open(os.path.join(step_dir, 'data', 'metadata')) as f:
    position = json.load(f)
  leaves = {'/'.join(str(getattr(k, 'key', k)) for k in path): np.asarray(x)
            for path, x in jax.tree_util.tree_leaves_with_path(state['params'])}
  return leaves, position


def assert_close(a, b, what):
  assert sorted(a) == sorted(b)
  worst = max(float(np.max(np.abs(a[k] - b[k]) / (np.abs(b[k]) + 1e-6)))
              for k in a if 'key/bias' not in k)   # key bias: round-off only
  print(f'{what}: max relative difference {worst:.2e}')
  for k in a:
    if 'key/bias' in k:
      continue
    np.testing.assert_allclose(a[k], b[k], rtol=RTOL, atol=1e-7, err_msg=f'{what}: {k}')


def resumable_copy(workdir, dest, step):
  """`workdir` as it stood when its checkpoint `step` was the latest: the
  later checkpoints (and the finished run's export) are left out."""
  shutil.copytree(workdir, dest, ignore=shutil.ignore_patterns('hf', 'DONE'))
  for name in os.listdir(os.path.join(dest, 'checkpoints')):
    if name.isdigit() and int(name) > step:
      shutil.rmtree(os.path.join(dest, 'checkpoints', name))
  return dest


def test_two_processes_match_one_and_checkpoints_cross_over(tmp_path):
  every = '--config.checkpoint_every=4'
  ref = str(tmp_path / 'ref')                  # 1 x 8, uninterrupted
  run_single(ref, 8, every)
  want, _ = params_at(ref, 8)

  two = str(tmp_path / 'two')                  # 2 x 4, uninterrupted
  outs = run_two_processes(two, every)
  assert 'jaxdistil.train: step 8' in outs[0][0]
  assert 'jaxdistil.train' not in outs[1][0]    # only process 0 prints
  got, position = params_at(two, 8)
  assert position == {'step': 8}
  assert_close(got, want, '2x4 vs 1x8')
  assert_close(params_at(two, 4)[0], params_at(ref, 4)[0], 'step 4: 2x4 vs 1x8')
  assert not os.path.exists(os.path.join(two, 'metrics.jsonl.1'))
  with open(os.path.join(two, 'metrics.jsonl')) as f:
    assert len(f.readlines()) == 8              # one writer, process 0

  # 1 x 8's checkpoint at step 4, resumed by 2 x 4 to 8.
  a = resumable_copy(ref, str(tmp_path / 'a'), 4)
  run_two_processes(a, every)
  assert_close(params_at(a, 8)[0], want, '1x8 -> 2x4')

  # 2 x 4's checkpoint at step 4, resumed by 1 x 2 (another device count).
  b = resumable_copy(two, str(tmp_path / 'b'), 4)
  run_single(b, 2, every)
  assert_close(params_at(b, 8)[0], want, '2x4 -> 1x2')


def test_partial_distributed_flags_are_one_line(tmp_path):
  r = subprocess.run(command(str(tmp_path / 'w'), '--num_processes=2'), cwd=ROOT,
                     env=env(1), capture_output=True, text=True, timeout=LIMIT_S)
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1] == (
      'jaxdistil.train: a multi-process run needs all of --coordinator_address, '
      '--num_processes and --process_id')


def test_a_lost_peer_stops_the_survivor_with_one_line(tmp_path):
  """Process 1 is killed (SIGKILL: a preempted worker) after the first
  checkpoint; process 0 notices within about --heartbeat_timeout seconds and
  exits with status 3 and one line naming process 1 and that checkpoint (JAX
  alone would abort it with 134, a fatal log and a thread dump). A rerun of
  both resumes and finishes."""
  import signal
  import time
  work = str(tmp_path / 'w')
  port = free_port()
  heartbeat = 5
  procs = [subprocess.Popen(
      command(work, f'--coordinator_address=localhost:{port}', '--num_processes=2',
              f'--process_id={i}', '--distributed_timeout=60',
              f'--heartbeat_timeout={heartbeat}', '--config.total_steps=100000',
              '--config.checkpoint_every=5'),
      cwd=ROOT, env=env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(2)]
  try:
    deadline = time.time() + LIMIT_S
    checkpoints = os.path.join(work, 'checkpoints')
    while time.time() < deadline and not (
        os.path.isdir(checkpoints)
        and any(n.isdigit() for n in os.listdir(checkpoints))):
      assert procs[0].poll() is None and procs[1].poll() is None
      time.sleep(0.1)
    procs[1].send_signal(signal.SIGKILL)
    killed = time.time()
    _, err = procs[0].communicate(timeout=LIMIT_S)
    noticed = time.time() - killed
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  print(f'survivor stopped {noticed:.1f} s after the kill (heartbeat {heartbeat} s)')
  assert procs[0].returncode == 3, err[-3000:]
  last = err.strip().splitlines()[-1]
  assert last.startswith('jaxdistil.train: process 1 of 2 was lost'), last
  assert 'the last checkpoint is step ' in last and 'rerun the same command' in last
  assert noticed < 60
  # Every process rerun: it resumes and ends.
  run_two_processes(work, '--config.total_steps=20', '--config.checkpoint_every=5')
  assert params_at(work, 20)[1] == {'step': 20}
