"""`python -m jaxdistil.ablate`: variants trained, GLUE-evaluated, table 4 printed."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

# End-to-end runs (subprocesses, whole trainings): the full suite only.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_vocab(folder, size=128):
  folder.mkdir()
  words = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + [
      f'w{i}' for i in range(size - 5)]
  (folder / 'vocab.txt').write_text('\n'.join(words) + '\n')
  return str(folder)


def make_sst2(root, rng, n_train=64, n_dev=24):
  """An SST-2-layout task whose label is whether w1 occurs: learnable."""
  d = root / 'SST-2'
  d.mkdir(parents=True)
  for name, n in (('train', n_train), ('dev', n_dev)):
    rows = ['sentence\tlabel']
    for _ in range(n):
      words = [f'w{k}' for k in rng.integers(2, 60, size=6)]
      label = int(rng.integers(0, 2))
      if label:
        words[int(rng.integers(0, 6))] = 'w1'
      rows.append(' '.join(words) + f'\t{label}')
    (d / f'{name}.tsv').write_text('\n'.join(rows) + '\n')
  return str(root)


def test_ablate_trains_variants_and_prints_table4(tmp_path):
  vocab = make_vocab(tmp_path / 'vocab')
  glue = make_sst2(tmp_path / 'glue', np.random.default_rng(0))
  work = str(tmp_path / 'ablate')
  r = subprocess.run(
      [sys.executable, '-m', 'jaxdistil.ablate', '--config=configs/tiny.py',
       f'--workdir={work}', f'--glue_data={glue}', '--tasks=SST-2',
       '--variants=full,no_ce', '--config.data=synthetic', '--config.total_steps=4',
       '--config.eval_every=0', '--config.checkpoint_every=4',
       f'--tokenizer={vocab}',
       '--glue_max_steps=6', '--glue_max_len=16', '--no_progress'],
      cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS='cpu'), capture_output=True,
      text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  with open(os.path.join(work, 'ablation.json')) as f:
    summary = json.load(f)
  assert summary['variants'] == ['full', 'no_ce']
  assert summary['overrides']['total_steps'] == '4'
  for v in ('full', 'no_ce'):
    assert os.path.isfile(os.path.join(work, v, 'DONE'))     # trained to the end
    assert summary['results'][v]['SST-2']['num_dev'] == {'dev': 24}
  # The no_ce run really had no soft-target term, the full one did.
  rows = {v: [json.loads(l) for l in open(os.path.join(work, v, 'metrics.jsonl'))]
          for v in ('full', 'no_ce')}
  assert all(row['loss_ce'] > 0 for row in rows['full'])
  with open(os.path.join(work, 'no_ce', 'config.json')) as f:
    assert json.load(f)['loss']['alpha_ce'] == 0.0
  # Table 4: the delta printed is the difference of the two macro scores.
  full, no_ce = summary['score']['full'], summary['score']['no_ce']
  assert f'| no_ce | {no_ce:.2f} | {no_ce - full:+.2f} |' in r.stdout
  assert '| full |' in r.stdout and '| Model | Score |' in r.stdout


def test_ablate_bad_input_is_one_line(tmp_path):
  r = subprocess.run(
      [sys.executable, '-m', 'jaxdistil.ablate', '--config=configs/tiny.py',
       f'--workdir={tmp_path / "w"}', f'--glue_data={tmp_path}', '--tasks=SST-2',
       '--variants=full,no_kd'],
      cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS='cpu'), capture_output=True,
      text=True, timeout=300)
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1].startswith(
      "jaxdistil.ablate: unknown variant 'no_kd'")
  # Overrides are train's `--config.key=value`, checked the same way.
  r = subprocess.run(
      [sys.executable, '-m', 'jaxdistil.ablate', '--config=configs/tiny.py',
       f'--workdir={tmp_path / "w"}', f'--glue_data={tmp_path}',
       '--config.no_such_key=1'],
      cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS='cpu'), capture_output=True,
      text=True, timeout=300)
  assert r.returncode == 2 and r.stderr.strip().count('\n') == 0, r.stderr
  assert 'no_such_key' in r.stderr and not os.path.exists(tmp_path / 'w')
