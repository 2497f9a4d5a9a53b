"""The benchmark command and the FLOPs formula it reports."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistil import flops
from jaxdistil.models import bert

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_flops_formula_for_bert_base():
  base = bert.BertConfig()
  d, f, v, n = 768, 3072, 30522, 128
  layer = 2 * (4 * d * d + 2 * d * f) + 4 * n * d
  head = 2 * d * d + 2 * d * v
  assert flops.forward(base, n) == 12 * layer + head
  student = base.replace(num_layers=6, type_vocab_size=0)
  assert flops.distill_step(base, student, n) == (12 * layer + head
                                                  + 3 * (6 * layer + head))
  assert flops.distill_step(None, student, n) == 3 * (6 * layer + head)


def test_flops_formula_agrees_with_xla_cost_analysis():
  """XLA counts every op; matmuls dominate, so its count is a bit above ours."""
  cfg = bert.BertConfig(vocab_size=2048, hidden_size=128, num_layers=2, num_heads=4,
                        intermediate_size=512, max_position_embeddings=64,
                        hidden_dropout=0.0, attention_dropout=0.0)
  params = bert.init(cfg, jax.random.key(0))
  ids = jnp.ones((4, 64), jnp.int32)
  compiled = jax.jit(lambda p, i: bert.apply(cfg, p, i, jnp.ones_like(i)).logits
                     ).lower(params, ids).compile()
  xla_flops = compiled.cost_analysis()['flops']
  ours = flops.forward(cfg, 64) * ids.size
  assert ours <= xla_flops <= 1.1 * ours, (ours, xla_flops)


@pytest.mark.slow
def test_bench_command_prints_json():
  env = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu')
  out = subprocess.run(
      [sys.executable, '-m', 'jaxdistil.bench', '--config=configs/tiny.py',
       '--steps=2', '--json', '--parts'], cwd=ROOT, env=env, capture_output=True,
      text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  for key in ('tokens_per_s', 'step_s', 'compile_s', 'flops_per_token',
              'matmul_flops_per_s', 'mfu'):
    assert result[key] > 0, key
  tiny = bert.BertConfig(vocab_size=128, hidden_size=32, num_layers=2, num_heads=4,
                         intermediate_size=64, max_position_embeddings=32)
  assert result['flops_per_token'] == flops.distill_step(
      tiny, tiny.replace(num_layers=1, type_vocab_size=0), 16)
  assert result['tokens_per_s'] == pytest.approx(8 * 16 / result['step_s'])
  assert result['mfu'] == pytest.approx(
      result['tokens_per_s'] * result['flops_per_token']
      / result['matmul_flops_per_s'])
  assert set(result['parts']) == {'teacher_forward_s', 'student_forward_s',
                                  'student_forward_backward_losses_s',
                                  'optimizer_update_s'}
  assert 'MFU' in out.stdout


@pytest.mark.slow
def test_bench_bad_config_is_one_line():
  env = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu')
  out = subprocess.run(
      [sys.executable, '-m', 'jaxdistil.bench', '--config=configs/tiny.py',
       '--config.loss.temperature=-1'], cwd=ROOT, env=env, capture_output=True,
      text=True, timeout=300)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1] == (
      'jaxdistil.bench: config error: loss.temperature=-1.0 must be > 0 '
      '(the reference uses 2.0)')


@pytest.mark.slow
def test_bench_on_real_batches_packed_and_unpacked(tmp_path):
  """--data times the step on prepared batches and --input the pipeline; both
  count real (non-padding) tokens, and packing removes most of the padding."""
  from jaxdistil.data import corpus as corpus_lib
  src = tmp_path / 'corpus.txt'
  rng = np.random.default_rng(0)
  words = 'the quick brown fox jumps over a lazy dog while birds sing'.split()
  src.write_text('\n\n'.join(' '.join(rng.choice(words, rng.integers(12, 60)))
                              for _ in range(200)))
  import helpers
  corpus_lib.prepare(str(src), helpers.vocab_dir(), 64, str(tmp_path / 'prep'),
                     fmt='text', shard_size=50, progress_bar=False)
  env = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu')
  results = {}
  for packing in (True, False):
    out = subprocess.run(
        [sys.executable, '-m', 'jaxdistil.bench', '--config=configs/tiny.py',
         '--config.max_len=64', '--config.model.teacher.vocab_size=30522',
         '--config.model.teacher.max_position_embeddings=64',
         f'--config.packing={packing}', '--steps=3', '--json',
         f'--data={tmp_path / "prep"}', f'--input={tmp_path / "prep"}',
         '--input_seconds=1'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    results[packing] = r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r['packing'] is packing and r['input_packing'] is packing
    assert 0 < r['real_tokens_per_s'] <= r['tokens_per_s'] * 1.5
    assert 0 <= r['padding_fraction'] < 1
    assert 0 < r['input_real_tokens_per_s'] <= r['input_tokens_per_s']
    assert r['input_padding_fraction'] == pytest.approx(
        1 - r['input_real_tokens_per_s'] / r['input_tokens_per_s'])
    assert r['input_over_step'] == pytest.approx(
        r['input_tokens_per_s'] / r['tokens_per_s'])
  assert results[True]['padding_fraction'] < 0.1
  assert results[False]['padding_fraction'] > 0.3
  assert results[True]['input_padding_fraction'] < 0.1


@pytest.mark.slow
def test_memory_report_shows_fsdp_sharding_the_state():
  """`bench --memory`: XLA's per-device figures; FSDP over 8 devices holds about
  an eighth of the params and Adam moments that data parallelism replicates."""
  from jaxdistil import bench
  from helpers import tiny_config
  dp = bench.memory(tiny_config(**{'mesh.data': 8, 'mesh.fsdp': 1}))
  fsdp = bench.memory(tiny_config(**{'mesh.data': 1, 'mesh.fsdp': 8}))
  assert dp['mesh'] == {'data': 8, 'fsdp': 1, 'tensor': 1}
  assert fsdp['mesh'] == {'data': 1, 'fsdp': 8, 'tensor': 1}
  # Donated state: its output aliases its input.
  assert dp['alias_bytes'] > 0 and fsdp['alias_bytes'] > 0
  assert fsdp['argument_bytes'] < 0.5 * dp['argument_bytes']
  for r in (dp, fsdp):
    assert r['total_bytes_per_device'] == (r['argument_bytes'] + r['output_bytes']
                                           - r['alias_bytes'] + r['temp_bytes'])


def test_known_chips_have_published_bf16_peaks_and_others_are_measured():
  from jaxdistil import flops
  assert flops.known_peak('TPU v4', 'bfloat16') == 275e12
  assert flops.known_peak('TPU v5 lite', 'bfloat16') == 197e12
  assert flops.known_peak('TPU v5p', 'bfloat16') == 459e12
  assert flops.known_peak('TPU v6 lite', 'bfloat16') == 918e12
  assert flops.known_peak('NVIDIA A100-SXM4-80GB', 'bfloat16') == 312e12
  assert flops.known_peak('NVIDIA H100 80GB HBM3', 'bfloat16') == 989e12
  assert flops.known_peak('NVIDIA H100 PCIe', 'bfloat16') == 756e12
  assert flops.known_peak('NVIDIA H200', 'bfloat16') == 989e12
  assert flops.known_peak('NVIDIA H200', 'float32') is None     # measured
  assert flops.known_peak('cpu', 'bfloat16') is None
