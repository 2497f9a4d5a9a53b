"""Test setup: 8 fake CPU devices for the sharding tests, set before jax starts."""

import os
import sys

import pytest

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)       # `configs` is a folder of the repository

# One XLA compilation cache for the session, this process and the commands it
# starts: most tests compile the same tiny steps, and a cache hit skips XLA's
# compile (seconds each on 2 cores). Tracing and lowering still run, so the
# tests that count compilations see every one. Set JAXDISTIL_TEST_XLA_CACHE=0
# to run without it.
if os.environ.get('JAXDISTIL_TEST_XLA_CACHE', '1') != '0':
  import tempfile
  os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                        tempfile.mkdtemp(prefix='jaxdistil-tests-xla-'))
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')



@pytest.fixture(scope='session')
def bpe_tokenizer(tmp_path_factory):
  """A RoBERTa-style byte-level BPE tokenizer directory, trained once a session
  on real text (`helpers.bpe_tokenizer_dir`)."""
  import helpers
  return helpers.bpe_tokenizer_dir(tmp_path_factory.mktemp('bpe_tokenizer'))


@pytest.fixture(scope='session')
def mbert_tokenizer(tmp_path_factory):
  """A multilingual-BERT-shaped cased WordPiece directory, 119,547 entries,
  built once a session (`helpers.mbert_vocab_dir`)."""
  import helpers
  return helpers.mbert_vocab_dir(tmp_path_factory.mktemp('mbert_tokenizer'))
