"""`python -m jaxdistil.train`: exact resume after SIGKILL, SIGTERM, bad input."""

import json
import re
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from helpers import ENV, ROOT, final_params, finished_steps

# End-to-end runs (subprocesses, whole trainings): the full suite only.
pytestmark = pytest.mark.slow


def command(workdir, *extra):
  return [sys.executable, '-m', 'jaxdistil.train', '--config=configs/tiny.py',
          f'--workdir={workdir}', '--config.data=synthetic',
          '--config.batch_size=32', '--config.checkpoint_every=25', *extra]


def start_and_signal(workdir, sig, steps):
  proc = subprocess.Popen(command(workdir, f'--config.total_steps={steps}'),
                          cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while not finished_steps(workdir) and time.time() < deadline:
    if proc.poll() is not None:
      break
    time.sleep(0.01)
  proc.send_signal(sig)
  out, err = proc.communicate(timeout=240)
  return proc.returncode, err


def test_sigkill_then_rerun_ends_bitwise_equal(tmp_path):
  steps = 200     # the kill comes right after the first checkpoint (25)
  a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
  subprocess.run(command(a, f'--config.total_steps={steps}'), cwd=ROOT, env=ENV,
                 check=True, capture_output=True, timeout=600)
  code, _ = start_and_signal(b, signal.SIGKILL, steps)
  assert code == -signal.SIGKILL, 'the run ended before it could be killed'
  killed_at = finished_steps(b)[-1]
  assert 0 < killed_at < steps
  subprocess.run(command(b, f'--config.total_steps={steps}'), cwd=ROOT, env=ENV,
                 check=True, capture_output=True, timeout=600)
  step_a, params_a = final_params(a)
  step_b, params_b = final_params(b)
  assert step_a == step_b == steps
  jax.tree.map(np.testing.assert_array_equal, params_b, params_a)
  # The restarted run logged the steps after the checkpoint it resumed from.
  logged = [json.loads(l)['step'] for l in open(os.path.join(b, 'metrics.jsonl'))]
  assert logged[-1] == steps and killed_at + 1 in logged


def test_sigterm_saves_the_current_step_and_exits_0(tmp_path):
  w = str(tmp_path / 'w')
  code, err = start_and_signal(w, signal.SIGTERM, 5000)
  assert code == 0, err[-2000:]
  saved = finished_steps(w)
  assert saved and saved[-1] < 5000
  logged = [json.loads(l)['step'] for l in open(os.path.join(w, 'metrics.jsonl'))]
  assert saved[-1] == logged[-1]        # saved exactly where it stopped


def test_rerunning_a_finished_run_changes_nothing(tmp_path):
  w = str(tmp_path / 'w')
  cmd = command(w, '--config.total_steps=30')
  subprocess.run(cmd, cwd=ROOT, env=ENV, check=True, capture_output=True,
                 timeout=300)
  before = final_params(w)
  out = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0 and 'step 30' in out.stdout
  step, params = final_params(w)
  assert step == before[0] == 30
  jax.tree.map(np.testing.assert_array_equal, params, before[1])


def test_bad_input_is_one_line(tmp_path):
  out = subprocess.run(command(str(tmp_path / 'w'), '--config.data=',
                               '--config.total_steps=3'), cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1].startswith(
      'jaxdistil.train: data is empty')
  out = subprocess.run(command(str(tmp_path / 'w2'), '--config.batch_size=7',
                               '--config.micro_batches=2'),
                       cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 2
  assert 'batch_size=7 is not divisible' in out.stderr.strip().splitlines()[-1]


def test_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path):
  w = str(tmp_path / 'w')
  subprocess.run(command(w, '--config.total_steps=25'), cwd=ROOT, env=ENV,
                 check=True, capture_output=True, timeout=300)
  out = subprocess.run(command(w, '--config.total_steps=60',
                               '--config.optim.learning_rate=1e30'),
                       cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 2
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith('jaxdistil.train: non-finite loss'), last
  assert 'the last good checkpoint is step 25' in last
  assert finished_steps(w) == [25]      # still there, untouched


def test_evaluation_and_tensorboard_are_written(tmp_path):
  w = str(tmp_path / 'w')
  subprocess.run(command(w, '--config.total_steps=20', '--config.eval_every=10'),
                 cwd=ROOT, env=ENV, check=True, capture_output=True, timeout=300)
  rows = {r['step']: r for r in map(json.loads,
                                    open(os.path.join(w, 'metrics.jsonl')))}
  assert sorted(rows) == list(range(1, 21))
  for step in (10, 20):
    for k in ('eval/mlm_loss', 'eval/mlm_accuracy', 'eval/kl_to_teacher',
              'eval/teacher_mlm_accuracy'):
      assert np.isfinite(rows[step][k]), (step, k)
  assert 'eval/mlm_loss' not in rows[5]
  for k in ('loss_ce', 'loss_mlm', 'loss_cos', 'learning_rate', 'grad_norm',
            'tokens_per_s', 'step_s'):
    assert k in rows[5]
  import tensorflow as tf
  events = [e for f in os.listdir(os.path.join(w, 'tensorboard'))
            for e in tf.compat.v1.train.summary_iterator(
                os.path.join(w, 'tensorboard', f))]
  tags = {v.tag for e in events for v in e.summary.value}
  assert {'train/loss', 'train/loss_ce', 'eval/mlm_accuracy'} <= tags


def test_checkpoint_of_another_model_is_refused_and_kept(tmp_path):
  w = str(tmp_path / 'w')
  subprocess.run(command(w, '--config.total_steps=25'), cwd=ROOT, env=ENV,
                 check=True, capture_output=True, timeout=300)
  out = subprocess.run(command(w, '--config.total_steps=30',
                               '--config.model.teacher.hidden_size=64'),
                       cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 2
  last = out.stderr.strip().splitlines()[-1]
  # Names the first parameter whose shape differs: hidden 32 saved, 64 asked.
  assert 'holds checkpoints of another model' in last, last
  assert re.search(r'parameter \S+ is \((\d+, )?32,?\) there but \((\d+, )?64,?\)',
                   last), last
  assert finished_steps(w) == [25]


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path):
  w = str(tmp_path / 'w')
  subprocess.run(command(w, '--config.total_steps=50'), cwd=ROOT, env=ENV,
                 check=True, capture_output=True, timeout=300)
  assert finished_steps(w) == [25, 50]
  state_dir = os.path.join(w, 'checkpoints', '50', 'state')
  for root, _, files in os.walk(state_dir):
    for name in files:
      if name != '_METADATA':
        with open(os.path.join(root, name), 'wb') as f:
          f.write(b'garbage')
  out = subprocess.run(command(w, '--config.total_steps=60'), cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'checkpoint' in out.stderr and 'cannot be read' in out.stderr
  logged = [json.loads(l)['step'] for l in open(os.path.join(w, 'metrics.jsonl'))]
  assert logged[50:] == list(range(26, 61))   # resumed from step 25
  assert finished_steps(w) == [25, 50, 60]
  assert os.path.isdir(os.path.join(w, 'checkpoints_damaged', '50'))


def test_a_missing_teacher_path_is_one_line(tmp_path):
  out = subprocess.run(command(str(tmp_path / 'w'), '--config.teacher=./no/such/dir'),
                       cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 2
  line = out.stderr.strip().splitlines()[-1]
  assert line.startswith("jaxdistil.train: teacher='./no/such/dir': ")
  assert 'does not exist' in line and 'Traceback' not in out.stderr
