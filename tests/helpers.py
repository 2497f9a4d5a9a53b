"""Shared helpers for the tests: tiny configs, batches, tree comparisons."""

import os

import jax
import numpy as np

from configs import tiny
from jaxdistil.data import synthetic


def tiny_config(**overrides):
  """The tiny config without dropout (so runs compare exactly), then overrides
  given as dotted keys: tiny_config(**{'loss.alpha_ce': 0.0})."""
  c = tiny.get_config()
  c.model.student.hidden_dropout = 0.0
  c.model.student.attention_dropout = 0.0
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def batches(c, n, seed=0):
  rng = np.random.default_rng(seed)
  return [synthetic.random_batch(rng, c.batch_size, c.max_len,
                                 c.model.teacher.vocab_size) for _ in range(n)]


def to_numpy(tree):
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def max_relative_error(a, b) -> float:
  """max over leaves of ||a - b|| / ||b||."""
  errs = jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.linalg.norm(np.asarray(x, np.float64) - y) /
                         max(np.linalg.norm(np.asarray(y, np.float64)), 1e-30)),
      a, b))
  return max(errs)


def without_key_bias(params):
  """The params without attention key biases.

  softmax(q.k + q.b_k) = softmax(q.k): the key bias adds the same amount to all of
  a query's scores, so its gradient is exactly 0 in exact arithmetic. In floats
  it is round-off (~1e-9), whose sign depends on summation order, and Adam turns
  that into steps of size ~lr with that sign. Comparing two runs that sum in a
  different order (sharded vs not, accumulated vs not) on that leaf compares
  noise; every other leaf is compared.
  """
  out = jax.tree.map(lambda x: x, params)
  for layer in out['encoder'].values():
    del layer['attention']['self']['key']['bias']
  return out


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_VOCAB = os.path.join(ROOT, '..', 'shared', 'data', 'vocab')
# The quick-start teacher's 4,096-piece WordPiece vocabulary ships in the package.
SHIPPED_VOCAB = os.path.join(ROOT, 'jaxdistil', 'quickstart_data', 'teacher')


def vocab_dir() -> str:
  """bert-base-uncased's vocabulary from ../shared/data when it is there, else
  the shipped one: for tests that need a real WordPiece vocabulary, not that one."""
  if os.path.isfile(os.path.join(SHARED_VOCAB, 'vocab.txt')):
    return SHARED_VOCAB
  return SHIPPED_VOCAB
