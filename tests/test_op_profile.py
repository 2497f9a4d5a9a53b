"""benchmarks/op_profile.py: ops put in the right part and kind, from a real trace."""

import jax
import jax.numpy as jnp
import pytest

from benchmarks import op_profile
from helpers import tiny_config


def test_part_of_reads_the_op_names_autodiff_writes():
  p = op_profile.part_of
  assert p('jit(train_step)/MaskedLM/encoder/layer_0/output/dense/dot_general') == 'teacher forward'
  assert p('jit(train_step)/jvp(MaskedLM)/cls/predictions/dot_general') == 'student forward'
  assert p('jit(train_step)/transpose(jvp(MaskedLM))/encoder/layer_1/mul') == 'student backward'
  assert p('jit(train_step)/jvp(jit(log_softmax))/reduce_max') == 'losses'
  assert p('jit(train_step)/transpose(jvp())/add_any') == 'losses'
  assert p('jit(train_step)/sqrt') == 'optimizer and other'


def test_hlo_index_finds_matmuls_inside_fusions():
  f = jax.jit(lambda a, b: jnp.tanh(a @ b) + jnp.exp(a).sum())
  a = jnp.ones((64, 64))
  text = f.lower(a, a).compile().as_text()
  op_names, kinds = op_profile.hlo_index(text)
  dots = [n for n, k in kinds.items() if k == 'matmul']
  assert dots, text
  assert any('dot_general' in op_names[n] or 'tanh' in op_names[n] for n in dots)
  assert 'other' in kinds.values()


@pytest.mark.slow
def test_profile_of_the_tiny_step_covers_every_part():
  r = op_profile.profile(tiny_config(), steps=1, top=5)
  parts = r['parts']
  assert set(parts) == set(op_profile.PARTS)
  for part in ('teacher forward', 'student forward', 'student backward'):
    assert parts[part]['matmul'] > 0, (part, parts)
  assert parts['losses']['other'] > 0
  assert parts['optimizer and other']['other'] > 0
  total = sum(v for kinds in parts.values() for v in kinds.values())
  assert abs(total - r['op_thread_s_per_step']) < 1e-9
  assert 0 < r['matmul_share'] < 1
  assert len(r['top_ops']) == 5
  assert [o['thread_s'] for o in r['top_ops']] == sorted(
      [o['thread_s'] for o in r['top_ops']], reverse=True)
  assert 'teacher forward' in op_profile.report(r)


def test_a_config_that_cannot_work_is_one_line():
  """3 rows cannot split over 8 devices."""
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run(
      [sys.executable, '-m', 'benchmarks.op_profile', '--config=configs/tiny.py',
       '--config.batch_size=3'], cwd=root, capture_output=True, text=True,
      timeout=300,
      env=dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8'))
  assert out.returncode == 2, out.stderr
  lines = [l for l in out.stderr.splitlines() if l.startswith('benchmarks.op_profile')]
  assert len(lines) == 1 and 'batch_size=3' in lines[0], out.stderr
  assert 'Traceback' not in out.stderr
