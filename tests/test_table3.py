"""`benchmarks/table3.py --tiny`: its report's structure, and the logits it
timed against `transformers` run here.

The script writes four tiny classifiers (our export) and times them with
jaxdistil, PyTorch and ONNX Runtime (on `torch.onnx.export`'s file and on
our own export, float32 and int8) on the first 24 MRPC dev pairs. Here each
folder is loaded by `AutoModelForSequenceClassification`, every pair is
tokenized by its own HF tokenizer (`truncation=True`, longest-first) and run
alone; jaxdistil's float32 logits and ONNX Runtime's (both files), at batch 1 and at batch
32 (bucket padding, a short batch filled up), must equal these within 1e-4
(absolute); the parameter counts must equal `transformers`' exactly.
"""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

from benchmarks import table3  # noqa: E402
from jaxdistil.glue import data as glue_data  # noqa: E402
from jaxdistil.glue import tasks  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLUE = os.path.join(ROOT, '..', 'shared', 'data', 'glue')
ATOL = 1e-4
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not os.path.isfile(os.path.join(GLUE, 'MRPC', 'dev.tsv')),
    reason='no shared data')]


def transformers_logits(folder: str, pairs) -> np.ndarray:
  model = transformers.AutoModelForSequenceClassification.from_pretrained(
      folder).eval()
  tok = transformers.AutoTokenizer.from_pretrained(folder)
  out = []
  with torch.inference_mode():
    for a, b in pairs:
      enc = tok(a, b, truncation=True, max_length=64, return_tensors='pt')
      if model.config.model_type == 'distilbert':
        enc.pop('token_type_ids', None)
      out.append(model(**enc).logits[0].numpy())
  return np.stack(out)


def test_tiny_table3_times_what_transformers_computes(tmp_path):
  work, out = tmp_path / 'work', tmp_path / 'r' / 'table3.json'
  assert table3.main(['--tiny', f'--workdir={work}', f'--output={out}',
                      '--profile=2', '--warmup=1']) == 0
  r = json.loads(out.read_text())
  assert r['task'] == 'MRPC' and r['examples'] == {'b1': 24, 'b32': 24}
  assert [m['name'] for m in r['models']] == [
      'tiny-bert', 'tiny-distilbert', 'tiny-minilm', 'tiny-minilm-3l']
  assert [m['layers'] for m in r['models']] == [4, 2, 6, 3]
  for m in r['models']:
    p = m['params']
    assert p['total'] == p['embeddings'] + p['encoder'] + p['head']
    assert p['total'] == m['torch_params'] > 0
    runs = r['runs'][m['name']]
    assert set(runs) == {'jax_float32', 'jax_bfloat16', 'torch', 'onnxruntime',
                         'onnxruntime_ours', 'onnxruntime_int8'}
    for v in runs.values():
      for b in ('b1', 'b32'):
        assert v[b]['examples'] == 24 and v[b]['total_s'] > 0
        assert v[b]['p50_ms'] <= v[b]['p90_ms']
    assert runs['jax_float32']['b1']['batches'] == 24
    assert runs['jax_float32']['b32']['batches'] == 1
    prof = runs['jax_float32']['profile_b1']
    assert prof['batches'] == 2 and prof['top_ops']
    a = r['agreement'][m['name']]
    assert a['jax_float32_vs_torch'] < ATOL and a['onnxruntime_vs_torch'] < ATOL
    assert a['onnxruntime_ours_vs_torch'] < ATOL
    # Quantized, so not float32's logits; per-tensor int8 on tiny random
    # models is coarse (real models' cost is benchmarks/onnx_accuracy's).
    assert 0 < a['onnxruntime_int8_vs_torch'] < a['max_abs_logit']
    assert 0 < a['jax_bfloat16_vs_float32'] < 0.1
  for pair in ('base', 'minilm'):
    speed = r['ratios']['student_speedup'][pair]
    assert set(speed) == {'jax_float32', 'jax_bfloat16', 'torch', 'onnxruntime',
                          'onnxruntime_ours', 'onnxruntime_int8'}
    assert all(x['b1'] > 0 for x in speed.values())
  goal = r['goals']['jax_b1_at_or_below_onnxruntime']['tiny-bert']['jax_float32']
  assert goal['met'] == (goal['ort_over_jax'] >= 1.0)
  int8 = r['goals']['int8_at_least_1.5x_float32_onnxruntime_b1']['tiny-bert']
  assert int8['met'] == (int8['ratio'] >= 1.5)
  assert r['machine']['matmul_rate']['float32'] > 0
  md = out.with_suffix('.md').read_text()
  assert '| tiny-minilm-3l (3 layers) |' in md and 'ONNX Runtime' in md

  dev = glue_data.read_split(tasks.get('MRPC'), 'dev', GLUE)
  pairs = list(zip(dev.text_a[:24], dev.text_b[:24]))
  with np.load(work / 'run_jax.npz') as z:
    ours = {k: z[k] for k in z.files}
  ort = {}
  for fw in ('onnxruntime', 'onnxruntime_ours'):
    with np.load(work / f'run_{fw}.npz') as z:
      ort.update({k: z[k] for k in z.files})
  for m in r['models']:
    want = transformers_logits(m['folder'], pairs)
    assert np.abs(want).max() > 0.1                  # not a vacuous check
    for b in ('b1', 'b32'):
      np.testing.assert_allclose(ours[f"{m['name']}/jax_float32/{b}"], want,
                                 atol=ATOL, rtol=0)
      for fw in ('onnxruntime', 'onnxruntime_ours'):
        np.testing.assert_allclose(ort[f"{m['name']}/{fw}/{b}"], want,
                                   atol=ATOL, rtol=0)


def test_bad_flags_are_one_line(tmp_path, capsys):
  assert table3.main(['--frameworks=jax,tensorflow', '--tiny',
                      f'--workdir={tmp_path}']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('table3: --frameworks') and '\n' not in err
