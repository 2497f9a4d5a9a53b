"""benchmarks/accelerator.py: the one call for a lent accelerator, run tiny on
a CPU with TensorFlow unimportable (the GPU machine has none)."""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Installed as sitecustomize on PYTHONPATH, so the PyTorch child processes
# run under it too: TensorFlow and TFDS look absent (the path finder no
# longer finds them), as on the accelerator, which has neither; probes such
# as torch._dynamo's `find_spec('tensorflow')` get None, imports fail.
BLOCK_TF = '''
import importlib.machinery
import sys

class _WithoutTensorFlow:
  @classmethod
  def find_spec(cls, name, path=None, target=None):
    if name.split('.')[0] in ('tensorflow', 'tensorflow_datasets'):
      return None
    return importlib.machinery.PathFinder.find_spec(name, path, target)

  @classmethod
  def find_distributions(cls, *args, **kwargs):   # importlib.metadata
    return importlib.machinery.PathFinder.find_distributions(*args, **kwargs)

  @classmethod
  def invalidate_caches(cls):
    importlib.machinery.PathFinder.invalidate_caches()

sys.meta_path[:] = [_WithoutTensorFlow if f is importlib.machinery.PathFinder
                    else f for f in sys.meta_path]
'''


def run_accelerator(tmp_path, *flags, timeout=240):
  site = tmp_path / 'site'
  site.mkdir(exist_ok=True)
  (site / 'sitecustomize.py').write_text(BLOCK_TF)
  env = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu',
             PYTHONPATH=os.pathsep.join([str(site), ROOT]))
  return subprocess.run(
      [sys.executable, 'benchmarks/accelerator.py', *flags], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=timeout)


def finite_numbers(tree):
  if isinstance(tree, dict):
    for v in tree.values():
      yield from finite_numbers(v)
  elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
    yield tree


def test_the_block_refuses_tensorflow(tmp_path):
  site = tmp_path / 'site'
  site.mkdir()
  (site / 'sitecustomize.py').write_text(BLOCK_TF)
  out = subprocess.run([sys.executable, '-c', 'import tensorflow'],
                       env=dict(os.environ, PYTHONPATH=str(site)),
                       capture_output=True, text=True, timeout=60)
  assert out.returncode == 1 and 'ModuleNotFoundError' in out.stderr


@pytest.mark.slow
def test_tiny_run_measures_training_inference_and_torch_without_tensorflow(
    tmp_path):
  chosen = ['train_16_xla', 'inference_distilbert_b1_bfloat16', 'torch_train_16',
            'torch_inference_b1', 'train_32_xla_packed', 'train_32_xla_full',
            'inference_bert_b32_float32']          # in order of value
  given = sorted(chosen)                       # run in their order all the same
  out = run_accelerator(tmp_path, f'--output={tmp_path}/out', '--tiny',
                        '--steps=1', '--torch=cpu', f'--items={",".join(given)}')
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads((tmp_path / 'out' / 'accelerator.json').read_text())
  assert report['errors'] == {}, report['errors']
  assert list(report['items']) == chosen
  assert report['environment']['versions']['jax']
  assert report['environment']['cpu']['model_name']
  for name in chosen:
    item = report['items'][name]
    assert item['wall_s'] > 0 and 'result' in item, name
    assert all(math.isfinite(x) for x in finite_numbers(item['result'])), name
  train = report['items']['train_16_xla']['result']
  assert train['tokens_per_s'] > 0 and 0 < train['mfu'] < 1
  assert train['max_len'] == 16 and train['data'] == 'random full-length rows'
  packed = report['items']['train_32_xla_packed']['result']
  assert packed['packing'] is True and packed['padding_fraction'] < 0.5
  assert report['items']['train_32_xla_full']['result']['remat'] == 'full'
  infer = report['items']['inference_distilbert_b1_bfloat16']['result']
  assert infer['latency_ms']['p90'] >= infer['latency_ms']['p50'] > 0
  assert infer['dtype'] == 'bfloat16' and infer['head'] == '2 outputs'
  torch_infer = report['items']['torch_inference_b1']['result']
  # The same shapes in both frameworks: the same parameter counts.
  assert (torch_infer['distilbert_float32']['params']
          == infer['params']['total'])
  bert_params = report['items']['inference_bert_b32_float32']['result']['params']
  assert torch_infer['bert_float32']['params'] == bert_params['total']
  torch_train = report['items']['torch_train_16']['result']
  assert torch_train['framework'] == 'pytorch' and torch_train['tokens_per_s'] > 0


def test_budget_spent_skips_every_item_and_still_writes_the_json(tmp_path):
  out = run_accelerator(tmp_path, f'--output={tmp_path}/r.json', '--tiny',
                        '--budget_s=0', '--torch=off', timeout=120)
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads((tmp_path / 'r.json').read_text())
  assert report['items'] and all('budget' in i['skipped']
                                 for i in report['items'].values())
  assert 'torch' in report                     # says why PyTorch did not run


def test_unknown_item_is_one_line_and_exit_2(tmp_path):
  out = run_accelerator(tmp_path, f'--output={tmp_path}/r.json', '--tiny',
                        '--items=train_16_nope', timeout=120)
  assert out.returncode == 2
  assert len(out.stderr.strip().splitlines()) == 1
  assert 'train_16_nope' in out.stderr


def test_random_packed_rows_are_laid_out_as_the_pipeline_lays_them():
  import numpy as np
  from jaxdistil.data import synthetic
  b = synthetic.random_packed_batch(np.random.default_rng(0), 6, 64, 200)
  assert all(v.shape == (6, 64) for v in b.values())
  for row in range(6):
    seg, pos, ids = b['segment_ids'][row], b['position_ids'][row], b['labels'][row]
    real = seg > 0
    np.testing.assert_array_equal(b['attention_mask'][row], real)
    n = real.sum()
    assert real[:n].all() and not real[n:].any()        # padding at the end
    count = seg.max()
    assert count >= 1 and set(seg[real]) == set(range(1, count + 1))
    for k in range(1, count + 1):
      where = np.flatnonzero(seg == k)
      assert (np.diff(where) == 1).all()                  # contiguous
      np.testing.assert_array_equal(pos[where], np.arange(len(where)))
      assert ids[where[0]] == synthetic.CLS and ids[where[-1]] == synthetic.SEP
  masked = b['mlm_mask'] > 0
  assert masked.any() and (b['labels'][masked] >= synthetic.FIRST_WORD).all()
  np.testing.assert_array_equal(b['input_ids'][~masked], b['labels'][~masked])
  assert b['attention_mask'].mean() > 0.8          # best fit leaves little padding
