"""The train loop in process (fast): metrics fetched every `log_every` steps and
not on every step, a non-finite loss caught within that window and never
checkpointed, and a run killed mid-way that resumes to the uninterrupted result
bit for bit."""

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_config, to_numpy
from jaxdistil import build, checkpoint, train, train_log


def config(**kw):
  c = tiny_config(**{'data': 'synthetic', 'total_steps': 12, 'eval_every': 0,
                     'checkpoint_every': 6, 'log_every': 4,
                     'peak_flops_per_device': 1e10})
  for k, v in kw.items():
    c[k] = v
  return c


@pytest.fixture
def fetches(monkeypatch):
  calls = []
  real = train_log.fetch

  def counting(tree):
    calls.append(len(jax.tree.leaves(tree)))
    return real(tree)
  monkeypatch.setattr(train_log, 'fetch', counting)
  return calls


def rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


@pytest.mark.smoke
def test_metrics_are_fetched_every_log_every_steps_not_every_step(tmp_path, fetches):
  w = str(tmp_path / 'w')
  before = signal.getsignal(signal.SIGTERM)
  out = train.train(config(), w)
  # train's SIGTERM handler (save and stop) is its own: a caller that goes on
  # to other work (replicate's GLUE stage) gets its own handler back.
  assert signal.getsignal(signal.SIGTERM) is before and not out['preempted']
  # Flushes at 4, 6 (checkpoint), 8, 12 (checkpoint): 4 transfers for 12 steps.
  assert len(fetches) == 4
  logged = rows(w)
  assert [r['step'] for r in logged] == list(range(1, 13))
  assert all(np.isfinite(r['loss']) and r['step_s'] > 0 for r in logged)


@pytest.mark.slow
def test_evaluations_add_one_fetch_each(tmp_path, fetches):
  w = str(tmp_path / 'w')
  train.train(config(eval_every=6, eval_batches=2), w)
  # 4, 6 (+ its evaluation), 8, 12 (+ its evaluation).
  assert len(fetches) == 6
  evals = [r for r in rows(w) if 'eval/mlm_accuracy' in r]
  assert [r['step'] for r in evals] == [6, 12]


def with_nan_loss_at(monkeypatch, bad_step):
  real_build = build.build

  def patched(c, *a, **kw):
    run = real_build(c, *a, **kw)
    step_fn = run.train_step

    def poisoned(state, teacher, batch):
      new, m = step_fn(state, teacher, batch)
      m = dict(m, loss=jnp.where(new.step == bad_step, jnp.nan, m['loss']))
      return new, m
    run.train_step = jax.jit(poisoned, donate_argnums=(0,))
    return run
  monkeypatch.setattr(build, 'build', patched)


@pytest.mark.slow
def test_a_nan_loss_is_caught_within_the_window_and_never_saved(tmp_path,
                                                                monkeypatch):
  with_nan_loss_at(monkeypatch, 7)
  w = str(tmp_path / 'w')
  with pytest.raises(train.TrainError) as info:
    train.train(config(log_every=4, checkpoint_every=2), w)
  msg = str(info.value)
  # Step 7 is fetched at step 8's flush, before step 8's checkpoint.
  assert 'non-finite loss nan at step 7' in msg and 'checkpoint is step 6' in msg
  mgr = checkpoint.manager(w)
  assert sorted(mgr.all_steps()) == [2, 4, 6]
  assert max(r['step'] for r in rows(w)) == 6


class Killed(Exception):
  pass


def test_killed_mid_run_then_rerun_equals_the_uninterrupted_run(tmp_path,
                                                                monkeypatch):
  c = config(total_steps=10, checkpoint_every=4, log_every=3)
  whole = train.train(c, str(tmp_path / 'whole'))

  real_make_data = train.make_data

  def dying_data(cfg, position, split='train'):
    data = real_make_data(cfg, position, split)
    if split != 'train':
      return data
    real_next = type(data).__next__

    class Dying(type(data)):
      def __next__(self):
        if self.position['step'] >= 6:      # killed while on step 7
          raise Killed()
        return real_next(self)
    data.__class__ = Dying
    return data

  w = str(tmp_path / 'killed')
  monkeypatch.setattr(train, 'make_data', dying_data)
  with pytest.raises(Killed):
    train.train(config(total_steps=10, checkpoint_every=4, log_every=3), w)
  assert sorted(checkpoint.manager(w).all_steps()) == [4]
  monkeypatch.setattr(train, 'make_data', real_make_data)
  resumed = train.train(config(total_steps=10, checkpoint_every=4, log_every=3), w)
  assert resumed['step'] == 10
  a, b = to_numpy(whole['state'].params), to_numpy(resumed['state'].params)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  for x, y in zip(jax.tree.leaves(to_numpy(whole['state'].opt_state)),
                  jax.tree.leaves(to_numpy(resumed['state'].opt_state))):
    np.testing.assert_array_equal(x, y)


def test_log_every_below_one_is_refused():
  from jaxdistil.config_lib import ConfigError
  with pytest.raises(ConfigError, match='log_every=0 must be >= 1'):
    build.build(config(log_every=0))


@pytest.mark.slow
def test_build_neither_mutates_its_config_nor_builds_a_state_to_restore_into(
    tmp_path, monkeypatch):
  c = config(total_steps=4, checkpoint_every=2)
  before = c.to_json_best_effort()
  run = build.build(c)
  assert c.to_json_best_effort() == before
  assert run._state is None                       # nothing built yet
  assert all(isinstance(x, jax.ShapeDtypeStruct)
             for x in jax.tree.leaves(run.abstract_state))
  w = str(tmp_path / 'w')
  train.train(c, w)
  assert c.to_json_best_effort() == before
  # A resume restores into the abstract state: the fresh one is never built.
  calls = []
  real_build = build.build

  def counting_build(*a, **kw):
    r = real_build(*a, **kw)
    real_init = r.init_state
    r.init_state = lambda: calls.append(1) or real_init()
    return r
  monkeypatch.setattr(build, 'build', counting_build)
  out = train.train(config(total_steps=6, checkpoint_every=2), w)
  assert out['step'] == 6 and calls == []


@pytest.mark.slow
def test_a_step_that_cannot_fit_is_one_line_before_any_step(tmp_path, monkeypatch):
  from jaxdistil import memory_fit
  from jaxdistil.config_lib import ConfigError
  monkeypatch.setattr(memory_fit, 'available_bytes', lambda device=None: 1 << 10)
  w = str(tmp_path / 'w')
  with pytest.raises(ConfigError) as info:
    train.train(config(batch_size=16, micro_batches=2), w)
  msg = str(info.value)
  assert '\n' not in msg and 'GiB per device' in msg and '0.0 GiB is free' in msg
  assert 'batch_size=16 / micro_batches=2 = 8' in msg and 'max_len=' in msg
  assert 'mesh.fsdp' in msg
  metrics = os.path.join(w, 'metrics.jsonl')
  assert not os.path.exists(metrics) or os.path.getsize(metrics) == 0
  assert checkpoint.manager(w).all_steps() == []


def test_step_bytes_counts_the_donated_state_once():
  from jaxdistil import memory_fit
  f = jax.jit(lambda x, y: (x + 1.0, (x @ y).sum()), donate_argnums=0)
  x = jnp.ones((256, 256), jnp.float32)
  m = memory_fit.step_bytes(f.lower(x, x).compile())
  assert m['argument_bytes'] >= 2 * 256 * 256 * 4
  assert m['total_bytes_per_device'] == (m['argument_bytes'] + m['output_bytes']
                                         - m['alias_bytes'] + m['temp_bytes'])
  assert memory_fit.available_bytes() > 0
