"""The fused train step: sharding invariance, accumulation, frozen teacher, learning."""

import jax
import numpy as np
import pytest

from helpers import (batches, max_relative_error, tiny_config, to_numpy,
                     without_key_bias)
from jaxdistil import build


def train(c, batch_list, devices=None, run=None):
  run = run or build.build(c, devices=devices)
  state, history = run.state, []
  for b in batch_list:
    state, metrics = run.train_step(state, run.teacher_params,
                                    jax.device_put(b, run.batch_sharding))
    history.append({k: float(v) for k, v in metrics.items()})
  return run, state, history


@pytest.fixture(scope='module')
def single_device_run():
  c = tiny_config(**{'mesh.data': 1})
  _, state, history = train(c, batches(c, 3), devices=jax.devices()[:1])
  return to_numpy(state.params), history


@pytest.mark.parametrize('mesh', [(2, 2, 2),
                                  pytest.param((1, 4, 2), marks=pytest.mark.slow)])
def test_sharded_step_equals_single_device(single_device_run, mesh):
  assert len(jax.devices()) == 8
  c = tiny_config(**{'mesh.data': mesh[0], 'mesh.fsdp': mesh[1],
                     'mesh.tensor': mesh[2]})
  run, state, history = train(c, batches(c, 3))
  assert dict(run.mesh.shape) == dict(zip(('data', 'fsdp', 'tensor'), mesh))
  # The parameters really are split: a query kernel is sharded over fsdp, tensor.
  kernel = state.params['encoder']['layer_0']['attention']['self']['query']['kernel']
  assert kernel.sharding.spec[:2] == (('fsdp' if mesh[1] > 1 else None), 'tensor')
  params_1, history_1 = single_device_run
  assert max_relative_error(without_key_bias(to_numpy(state.params)),
                            without_key_bias(params_1)) <= 1e-5
  np.testing.assert_allclose([h['loss'] for h in history],
                             [h['loss'] for h in history_1], rtol=1e-5)


@pytest.mark.slow
def test_accumulating_micro_batches_equals_one_big_step():
  # 32 rows on 8 devices: 4 micro-batches of 8, one row per device each.
  c1 = tiny_config(batch_size=32)
  c4 = tiny_config(batch_size=32, micro_batches=4)
  data = batches(c1, 2)
  _, s1, h1 = train(c1, data)
  _, s4, h4 = train(c4, data)
  assert max_relative_error(without_key_bias(to_numpy(s4.params)),
                            without_key_bias(to_numpy(s1.params))) <= 1e-5
  for k in ('loss', 'loss_ce', 'loss_mlm', 'loss_cos', 'grad_norm', 'tokens',
            'masked_tokens'):
    # loss_ce is ~1e-3 here (the student starts as the teacher's copy), a KL of
    # near-equal distributions: round-off is relative to the terms, not the KL.
    np.testing.assert_allclose([h[k] for h in h4], [h[k] for h in h1], rtol=1e-5,
                               atol=1e-7, err_msg=k)


def test_teacher_is_frozen_and_loss_falls():
  c = tiny_config(total_steps=30)
  run = build.build(c)
  teacher_before = to_numpy(run.teacher_params)
  student_before = to_numpy(run.state.params)
  fixed = batches(c, 1)[0]
  _, state, history = train(c, [fixed] * 30, run=run)
  # Bitwise unchanged teacher (and its buffers were never donated away).
  jax.tree.map(np.testing.assert_array_equal, to_numpy(run.teacher_params),
               teacher_before)
  losses = [h['loss'] for h in history]
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.9 * losses[0], losses
  assert np.mean(losses[-5:]) < np.mean(losses[5:10]) < np.mean(losses[:5])
  # Frozen position embeddings (the default) did not move; the rest did.
  after = to_numpy(state.params)
  np.testing.assert_array_equal(
      after['embeddings']['position_embeddings']['embedding'],
      student_before['embeddings']['position_embeddings']['embedding'])
  assert not np.array_equal(after['embeddings']['word_embeddings']['embedding'],
                            student_before['embeddings']['word_embeddings']
                            ['embedding'])
  assert int(state.step) == 30


@pytest.mark.slow
def test_position_embeddings_train_when_not_frozen():
  c = tiny_config(**{'student_init.freeze_position_embeddings': False})
  run = build.build(c)
  before = to_numpy(run.state.params['embeddings']['position_embeddings'])
  _, state, _ = train(c, batches(c, 3), run=run)
  after = to_numpy(state.params['embeddings']['position_embeddings'])
  assert not np.array_equal(after['embedding'], before['embedding'])


@pytest.mark.slow
def test_key_bias_gradient_is_round_off():
  """Why the comparisons above leave the key bias out: its gradient is ~0."""
  c = tiny_config()
  run = build.build(c)
  b = jax.device_put(batches(c, 1)[0], run.batch_sharding)
  step_cfg = run.step_config
  from jaxdistil import losses
  from jaxdistil.models import bert

  def loss_fn(p):
    out = bert.apply(step_cfg.student, p, b['input_ids'], b['attention_mask'])
    parts = losses.terms(out, None, b, step_cfg.loss)
    return parts['mlm'][0] / parts['mlm'][1]

  grads = jax.grad(loss_fn)(run.state.params)
  attention = grads['encoder']['layer_0']['attention']['self']
  key = np.abs(attention['key']['bias']).max()
  query = np.abs(attention['query']['bias']).max()
  assert key < 1e-3 * query, (key, query)


@pytest.mark.slow
def test_step_compiles_once():
  c = tiny_config()
  run = build.build(c)
  run.state                  # built on first use: its own compiles come first
  events = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda name, *a, **kw: events.append(name))
  train(c, batches(c, 4, seed=3), run=run)
  assert run.train_step._cache_size() == 1
  compiles = events.count('/jax/core/compile/backend_compile_duration')
  # One compile for the step (device_put of the batches compiles nothing).
  assert compiles == 1, compiles


def test_metrics_are_reported_per_term():
  c = tiny_config()
  _, _, history = train(c, batches(c, 1))
  m = history[0]
  for k in ('loss', 'loss_ce', 'loss_mlm', 'loss_cos', 'loss_mse', 'grad_norm',
            'learning_rate', 'tokens', 'masked_tokens'):
    assert k in m and np.isfinite(m[k]), k
  np.testing.assert_allclose(
      m['loss'], 5 * m['loss_ce'] + 2 * m['loss_mlm'] + 1 * m['loss_cos'], rtol=1e-5)
  assert m['learning_rate'] == 0.0    # the first warm-up step
  assert m['tokens'] == sum(int(b['attention_mask'].sum()) for b in batches(c, 1))


@pytest.mark.slow
def test_teacher_free_mlm_training():
  c = tiny_config(**{'loss.alpha_ce': 0.0, 'loss.alpha_cos': 0.0,
                     'student_init.source': 'random'})
  run = build.build(c)
  assert run.teacher_params is None
  _, _, history = train(c, batches(c, 1) * 20, run=run)
  assert set(k for k in history[0] if k.startswith('loss_')) == {'loss_mlm'}
  assert history[-1]['loss'] < history[0]['loss']


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_master_weights():
  c32 = tiny_config()
  c16 = tiny_config(dtype='bfloat16')
  data = batches(c32, 2)
  _, s32, h32 = train(c32, data)
  _, s16, h16 = train(c16, data)
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(s16.params))
  np.testing.assert_allclose([h['loss'] for h in h16], [h['loss'] for h in h32],
                             rtol=3e-2)


@pytest.mark.slow
def test_dropout_changes_with_the_step():
  c = tiny_config(**{'model.student.hidden_dropout': 0.1})
  b = batches(c, 1)[0]
  _, _, history = train(c, [b, b])
  _, _, again = train(c, [b, b])
  assert history == again          # same seed, same run
  c0 = tiny_config()
  _, _, no_dropout = train(c0, [b])
  assert history[0]['loss'] != no_dropout[0]['loss']


def test_fsdp_shards_optimizer_state_like_the_params():
  from jax.sharding import PartitionSpec as P
  c = tiny_config(**{'mesh.data': 2, 'mesh.fsdp': 2, 'mesh.tensor': 2})
  run = build.build(c)
  leaves = {tuple(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path): leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(
                run.state.opt_state)}
  kernel = ('encoder', 'layer_0', 'intermediate', 'dense', 'kernel')
  param = run.state.params['encoder']['layer_0']['intermediate']['dense']['kernel']
  assert param.sharding.spec == P('fsdp', 'tensor')
  moments = [leaf for keys, leaf in leaves.items() if keys[-5:] == kernel]
  assert len(moments) == 2              # Adam's mu and nu
  for mu in moments:
    assert mu.sharding.spec == param.sharding.spec
    # Each device holds a quarter of the moments (fsdp 2 x tensor 2), not a copy.
    assert mu.addressable_shards[0].data.size * 4 == mu.size
  # Frozen position embeddings have no optimizer state at all.
  assert not [k for k in leaves if 'position_embeddings' in k]


def test_eval_step_matches_numpy():
  from jaxdistil.models import bert
  from jaxdistil.step import make_eval_step, summarize_eval
  c = tiny_config()
  run = build.build(c)
  b = batches(c, 1, seed=5)[0]
  sums = jax.device_get(jax.jit(make_eval_step(run.step_config))(
      run.state.params, run.teacher_params, b))
  s = np.asarray(bert.apply(run.step_config.student, run.state.params,
                            b['input_ids'], b['attention_mask']).logits, np.float64)
  t = np.asarray(bert.apply(run.step_config.teacher, run.teacher_params,
                            b['input_ids'], b['attention_mask']).logits, np.float64)
  sel = (b['mlm_mask'] > 0) & (b['attention_mask'] > 0)
  logp = s - np.log(np.exp(s - s.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
      - s.max(-1, keepdims=True)
  nll = -np.take_along_axis(logp, b['labels'][..., None], -1)[..., 0]
  temp = 2.0
  ls = s / temp - np.log(np.exp(s / temp).sum(-1, keepdims=True))
  lt = t / temp - np.log(np.exp(t / temp).sum(-1, keepdims=True))
  kl = (np.exp(lt) * (lt - ls)).sum(-1) * temp ** 2
  real = b['attention_mask'] > 0
  expected = {
      'eval/mlm_loss': nll[sel].mean(),
      'eval/mlm_accuracy': (s.argmax(-1) == b['labels'])[sel].mean(),
      'eval/kl_to_teacher': kl[real].mean(),
      'eval/teacher_mlm_accuracy': (t.argmax(-1) == b['labels'])[sel].mean()}
  got = summarize_eval(sums)
  for k, v in expected.items():
    np.testing.assert_allclose(got[k], v, rtol=1e-4, atol=1e-6, err_msg=k)


def _equations(jaxpr):
  """Every equation of a jaxpr and of the jaxprs nested in it (jit, remat,
  custom_vjp, scan, ...)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (tuple, list)) else (value,)):
        inner = getattr(sub, 'jaxpr', sub)
        if hasattr(inner, 'eqns'):
          yield from _equations(inner)


def test_bfloat16_policy_as_tpus_run_it():
  """dtype='bfloat16': every matmul of the step (teacher, student forward and
  backward) takes bfloat16 operands; softmaxes, LayerNorm statistics, the
  losses and the optimizer are float32 (every exp, log, max-reduction and
  rsqrt outside the GELU); parameters, gradients and Adam's moments stay float32."""
  import jax.numpy as jnp
  c = tiny_config(dtype='bfloat16')
  run = build.build(c)
  batch = jax.device_put(batches(c, 1)[0], run.batch_sharding)
  jaxpr = jax.make_jaxpr(run.train_step)(run.state, run.teacher_params, batch).jaxpr
  eqns = list(_equations(jaxpr))
  dots = [e for e in eqns if e.primitive.name == 'dot_general']
  assert len(dots) > 20
  for e in dots:
    assert [v.aval.dtype for v in e.invars] == [jnp.bfloat16] * 2, e
  fp32_only = {'exp', 'log', 'reduce_max', 'rsqrt', 'log1p', 'sqrt'}
  # The GELUs (in `intermediate` and the MLM head's `transform`) may run in
  # bfloat16, as on TPUs: their erf's derivative has an exp.
  gelu = ('intermediate', 'predictions/transform')
  checked = [e for e in eqns if e.primitive.name in fp32_only
             and jnp.issubdtype(e.invars[0].aval.dtype, jnp.floating)
             and not any(g in str(e.source_info.name_stack) for g in gelu)]
  assert {e.primitive.name for e in checked} >= {'exp', 'log', 'reduce_max', 'rsqrt'}
  for e in checked:
    assert e.invars[0].aval.dtype == jnp.float32, e
  out_state, _ = jax.eval_shape(run.train_step, run.state, run.teacher_params, batch)
  for tree in (out_state.params, out_state.opt_state):
    floats = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert floats and all(x.dtype == jnp.float32 for x in floats)
