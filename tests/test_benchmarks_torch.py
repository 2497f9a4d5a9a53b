"""The PyTorch comparison step (benchmarks/torch_distil.py) does our step's work."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip('torch')
pytest.importorskip('transformers')

import jax                                   # noqa: E402
import jax.numpy as jnp                      # noqa: E402
import optax                                 # noqa: E402

from benchmarks import torch_distil as td    # noqa: E402
from jaxdistil import config_lib, flops, losses, optim, synthetic  # noqa: E402
from jaxdistil.models import bert            # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, 'configs', 'tiny.py')


def tiny_config(**overrides):
  spec = importlib.util.spec_from_file_location('tiny_config', TINY)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  for key, value in overrides.items():
    node = c
    *path, last = key.split('.')
    for p in path:
      node = node[p]
    node[last] = value
  return c


def padded_batch(c, seed=1):
  """A batch with padding, so real, masked and all-token counts all differ."""
  return synthetic.random_batch(np.random.default_rng(seed), c.batch_size,
                                c.max_len, c.model.teacher.vocab_size)


def jax_terms(outputs, batch_np, loss_cfg):
  s_logits, s_hidden, t_logits, t_hidden = (
      jnp.asarray(x.detach().numpy()) for x in outputs)
  batch = {k: jnp.asarray(v) for k, v in batch_np.items()}
  parts = losses.terms(bert.BertOutput(s_logits, (s_hidden,)),
                       bert.BertOutput(t_logits, (t_hidden,)), batch, loss_cfg)
  return parts, losses.counts(batch, loss_cfg)


@pytest.mark.parametrize('restrict_ce_to_mask', [False, True])
def test_step0_loss_terms_match_jaxdistil_losses(restrict_ce_to_mask):
  c = tiny_config(**{'loss.restrict_ce_to_mask': restrict_ce_to_mask})
  d = td.TorchDistiller(c)
  batch_np = padded_batch(c)
  batch = d.to_device(batch_np)
  # The same dropout masks in both calls: the same seed, the same draws.
  torch.manual_seed(123)
  outputs = d.forward(batch)
  torch.manual_seed(123)
  metrics = d.step(batch)

  parts, counts = jax_terms(outputs, batch_np, d.loss_cfg)
  # The torch loss functions on the very same tensors: sums and counts.
  torch_parts = td.loss_terms(*outputs, batch, d.loss_cfg)
  assert set(torch_parts) == set(parts) == {'ce', 'mlm', 'cos', 'mse'}
  for k, (s, n) in parts.items():
    ts, tn = torch_parts[k]
    assert float(ts.detach()) == pytest.approx(float(s), rel=1e-5), k
    assert float(tn) == float(n) == float(counts[k]), k
  # And the step's own step-0 metrics: sum / whole-batch count, and the total.
  for k in ('ce', 'mlm', 'cos', 'mse'):
    ours = float(parts[k][0]) / max(float(counts[k]), 1.0)
    assert metrics[f'loss_{k}'] == pytest.approx(ours, rel=1e-5), k
  ours_total = losses.total({k: s for k, (s, _) in parts.items()}, counts,
                            d.loss_cfg)
  assert metrics['loss'] == pytest.approx(float(ours_total), rel=1e-5)
  real, masked = batch_np['attention_mask'].sum(), batch_np['mlm_mask'].sum()
  assert float(counts['cos']) == real > masked == float(counts['mlm']) > 0
  assert float(counts['ce']) == (masked if restrict_ce_to_mask else real)


def test_same_sizes_dropout_and_frozen_positions():
  c = tiny_config()
  d = td.TorchDistiller(c)
  count = lambda m: sum(p.numel() for p in m.parameters())
  ours = lambda cfg: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
      jax.eval_shape(lambda k: bert.init(cfg, k), jax.random.key(0))))
  assert count(d.student) == ours(d.student_cfg)
  assert count(d.teacher) == ours(d.teacher_cfg)
  assert d.student.training and not d.teacher.training
  assert all(not p.requires_grad for p in d.teacher.parameters())
  emb = d.student.distilbert.embeddings
  assert not emb.position_embeddings.weight.requires_grad
  assert d.student.vocab_projector.weight is emb.word_embeddings.weight
  # The dropout sites of our student: embeddings, attention probabilities,
  # attention output (the hook) and MLP output, all at the config's 0.1.
  assert d.student.config.dropout == d.student.config.attention_dropout == 0.1
  layer = d.student.distilbert.transformer.layer[0]
  assert len(layer.attention.out_lin._forward_hooks) == 1
  n_trainable = sum(p.numel() for p in d.params)
  assert n_trainable == count(d.student) - emb.position_embeddings.weight.numel()


def test_accumulation_equals_one_pass():
  """Strided micro-batches with whole-batch counts: the gradient of one pass."""
  over = {'model.student.hidden_dropout': 0.0,
          'model.student.attention_dropout': 0.0}
  one = td.TorchDistiller(tiny_config(**over))
  four = td.TorchDistiller(tiny_config(micro_batches=4, **over))
  batch_np = padded_batch(tiny_config())
  a = one.accumulate_grads(one.to_device(batch_np))
  b = four.accumulate_grads(four.to_device(batch_np))
  for k in a['sums']:
    assert float(b['sums'][k]) == pytest.approx(float(a['sums'][k]), rel=1e-5), k
  for (name, p), q in zip(one.student.named_parameters(), four.student.parameters()):
    if p.grad is None:
      assert q.grad is None, name
      continue
    np.testing.assert_allclose(q.grad.numpy(), p.grad.numpy(), rtol=1e-4,
                               atol=1e-7, err_msg=name)


def test_optimizer_matches_jaxdistil_optim():
  """Clipping, AdamW, the schedule and the decay mask, against optax's chain."""
  cfg = optim.OptimConfig(weight_decay=0.01, clip_norm=1.0)
  total = 40
  for step in range(total + 2):
    # optax computes the schedule in float32.
    assert td.learning_rate(cfg, total, step) == pytest.approx(
        float(optim.schedule(cfg, total)(step)), rel=1e-6, abs=1e-12)

  rng = np.random.default_rng(0)
  params = {'dense': {'kernel': rng.standard_normal((4, 3)).astype(np.float32),
                      'bias': rng.standard_normal(3).astype(np.float32)},
            'pos': {'embedding': rng.standard_normal((5, 3)).astype(np.float32)}}
  frozen = {'dense': {'kernel': False, 'bias': False}, 'pos': {'embedding': True}}
  grads = [jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32),
                        params) for _ in range(4)]
  tx = optim.make(cfg, total, frozen)
  jp = jax.tree.map(jnp.asarray, params)
  state = tx.init(jp)
  for g in grads:
    updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, jp)
    jp = optax.apply_updates(jp, updates)

  kernel = torch.nn.Parameter(torch.tensor(params['dense']['kernel']))
  bias = torch.nn.Parameter(torch.tensor(params['dense']['bias']))
  opt = torch.optim.AdamW([{'params': [kernel], 'weight_decay': cfg.weight_decay},
                           {'params': [bias], 'weight_decay': 0.0}],
                          lr=cfg.learning_rate, betas=(cfg.b1, cfg.b2), eps=cfg.eps)
  for step, g in enumerate(grads):
    kernel.grad = torch.tensor(g['dense']['kernel'])
    bias.grad = torch.tensor(g['dense']['bias'])
    torch.nn.utils.clip_grad_norm_([kernel, bias], cfg.clip_norm)
    for group in opt.param_groups:
      group['lr'] = td.learning_rate(cfg, total, step)
    opt.step()
  np.testing.assert_allclose(kernel.detach().numpy(), jp['dense']['kernel'],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(bias.detach().numpy(), jp['dense']['bias'],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(jp['pos']['embedding']),
                                params['pos']['embedding'])


def _env():
  # One CPU device for jax (conftest asks for 8 fake ones in this process).
  return dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu')


def test_torch_benchmark_prints_json():
  out = subprocess.run(
      [sys.executable, '-m', 'benchmarks.torch_distil', f'--config={TINY}',
       '--steps=2', '--matmul_size=512', '--json'], cwd=ROOT, env=_env(),
      capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  r = json.loads(out.stdout.strip().splitlines()[-1])
  assert r['tokens_per_s'] > 0 and r['step_s'] > 0 and r['mfu'] > 0
  assert len(r['step_times_s']) == 2
  assert r['threads'] == td.cores()
  c = tiny_config()
  assert r['flops_per_token'] == flops.distill_step(
      config_lib.teacher_config(c), config_lib.student_config(c), 16)
  assert r['tokens_per_s'] == pytest.approx(8 * 16 / r['step_s'])
  assert r['mfu'] == pytest.approx(
      r['tokens_per_s'] * r['flops_per_token'] / r['matmul_flops_per_s'])
  assert 'MFU' in out.stdout


def test_torch_benchmark_refuses_a_bad_config():
  with pytest.raises(config_lib.ConfigError, match='batch_size=8 is not divisible'):
    td.benchmark(tiny_config(micro_batches=3), steps=1)


@pytest.mark.slow
def test_compare_prints_both_and_the_ratio():
  out = subprocess.run(
      [sys.executable, '-m', 'benchmarks.compare', f'--config={TINY}',
       '--config.batch_size=8', '--steps', '2', '--matmul_size=512', '--json'],
      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'jaxdistil/PyTorch' in out.stdout and 'tokens/s' in out.stdout
  assert 'MFU' in out.stdout
  r = json.loads(out.stdout.strip().splitlines()[-1])
  ours, theirs = r['jaxdistil'], r['pytorch']
  assert ours['tokens_per_s'] > 0 and theirs['tokens_per_s'] > 0
  assert r['same_flops_per_token']
  assert r['ratio']['tokens_per_s'] == pytest.approx(
      ours['tokens_per_s'] / theirs['tokens_per_s'])
  for key in ('batch_size', 'max_len', 'micro_batches', 'teacher_layers',
              'student_layers', 'dtype'):
    assert ours[key] == theirs[key], key
