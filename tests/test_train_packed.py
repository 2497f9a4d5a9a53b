"""`python -m jaxdistil.train` on prepared text with packed rows: epochs, exact
resume, and one-line errors for data that does not fit the config."""

import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import ENV, ROOT, final_params

VOCAB = os.path.join(ROOT, '..', 'shared', 'data', 'vocab')
pytestmark = [pytest.mark.slow,     # train runs in subprocesses
              pytest.mark.skipif(not os.path.exists(VOCAB),
                                 reason='../shared/data is not present')]


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """~300 sequences of 12-32 tokens (prepared at max_len 32) in 6 shards."""
  from jaxdistil.data import corpus as corpus_lib
  words = [w for w in open(os.path.join(VOCAB, 'vocab.txt')).read().split('\n')
           if w.isalpha() and len(w) > 3][:2000]
  rng = np.random.default_rng(1)
  text = '\n\n'.join(' '.join(rng.choice(words, size=rng.integers(12, 40)))
                     for _ in range(300))
  d = tmp_path_factory.mktemp('text')
  (d / 'corpus.txt').write_text(text)
  out = str(d / 'prepared')
  corpus_lib.prepare(str(d / 'corpus.txt'), VOCAB, 32, out, fmt='text',
                      shard_size=60, progress_bar=False)
  return out


def command(workdir, data, *extra):
  # Sequences of up to 32 tokens packed into rows of 64.
  return [sys.executable, '-m', 'jaxdistil.train', '--config=configs/tiny.py',
          f'--workdir={workdir}', f'--config.data={data}', '--config.max_len=64',
          '--config.model.teacher.vocab_size=30522',
          '--config.model.teacher.max_position_embeddings=64',
          '--config.batch_size=8', '--config.checkpoint_every=5',
          '--config.eval_every=0', *extra]


def run(*args):
  return subprocess.run(list(args), cwd=ROOT, env=ENV, capture_output=True,
                        text=True, timeout=600)


def test_epochs_of_packed_rows_and_an_exact_resume(prepared, tmp_path):
  from jaxdistil.data import pipeline
  data = pipeline.Pipeline(pipeline.InputConfig(prepared, batch_size=8, max_len=64,
                                                split='train'))
  per_epoch = data.batches_per_epoch
  assert 3 <= per_epoch <= 20
  whole = run(*command(tmp_path / 'a', prepared, '--config.num_epochs=1.5'))
  assert whole.returncode == 0, whole.stderr[-3000:]
  steps = int(np.ceil(1.5 * per_epoch))
  assert (f'{steps} steps of 8 rows cover {steps / per_epoch:.2f} epochs'
          in whole.stdout), whole.stdout
  assert 'packing on' in whole.stdout
  # The same schedule in two jobs: stopped at step 4, then resumed.
  first = run(*command(tmp_path / 'b', prepared, '--config.num_epochs=1.5',
                       '--config.stop_at=4'))
  assert first.returncode == 0, first.stderr[-3000:]
  second = run(*command(tmp_path / 'b', prepared, '--config.num_epochs=1.5'))
  assert second.returncode == 0, second.stderr[-3000:]
  (step_a, a), (step_b, b) = final_params(str(tmp_path / 'a')), final_params(
      str(tmp_path / 'b'))
  assert step_a == step_b == steps
  for x, y in zip(__import__('jax').tree.leaves(a), __import__('jax').tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_rows_shorter_than_the_data_is_one_line(prepared, tmp_path):
  meta = os.path.join(prepared, 'metadata.json')
  before = os.stat(meta).st_mtime_ns
  out = run(*command(tmp_path / 'w', prepared, '--config.max_len=16'))
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1].startswith(
      'jaxdistil.train: ') and 'longer than rows of max_len=16' in out.stderr
  assert 'Traceback' not in out.stderr
  assert os.stat(meta).st_mtime_ns == before


def test_masking_out_of_range_is_one_line(prepared, tmp_path):
  out = run(*command(tmp_path / 'w', prepared, '--config.masking.keep=0.3'))
  assert out.returncode == 2
  assert out.stderr.strip().splitlines()[-1] == (
      'jaxdistil.train: masking.mask_token + random_token + keep = 0.8 + 0.1 + '
      '0.3 = 1.2, not 1 (the reference uses 0.8 / 0.1 / 0.1)')
  assert not os.path.exists(tmp_path / 'w' / 'checkpoints')
