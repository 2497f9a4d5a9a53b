"""ONNX out (`convert export --format=onnx`, `--quantize=int8`) and
`predict --runtime=onnxruntime`, checked where the model is used: in ONNX
Runtime, against `transformers` in PyTorch and against our own forward.

Tiny `*ForSequenceClassification` models with every parameter random
(`helpers.classifiers`), on padded rows. Tolerances: float32 ONNX logits
within 1e-4 (max abs) of PyTorch's and of ours; `predict`'s scores on the two
runtimes within 1e-4 with the same labels. The int8 model is held to what
dynamic quantization promises (logits within 0.05 of the float model's on
these O(1) logits, and int8 MatMuls in its graph), not to float32.
"""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

from helpers.classifiers import (LABELS, hf_classifier, rows,  # noqa: E402
                                 their_logits)
from jaxdistil import convert, inference, predict  # noqa: E402
from jaxdistil.convert import onnx_out  # noqa: E402
from jaxdistil.convert.__main__ import main as convert_main  # noqa: E402

ATOL = 1e-4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB_TXT = os.path.join(ROOT, '..', 'shared', 'data', 'vocab', 'vocab.txt')


def saved(model, path) -> str:
  model.save_pretrained(str(path))
  return str(path)


def ort_logits(folder: str, ids, mask, types) -> np.ndarray:
  session = ort.InferenceSession(os.path.join(folder, 'model.onnx'),
                                 providers=['CPUExecutionProvider'])
  feed = {'input_ids': ids, 'attention_mask': mask, 'token_type_ids': types}
  return session.run(['logits'], {i.name: np.asarray(feed[i.name], np.int64)
                                  for i in session.get_inputs()})[0]


def export(src: str, out, *flags) -> int:
  return convert_main(['export', '--format=onnx', f'--checkpoint={src}',
                       f'--output={out}', *flags])


@pytest.mark.parametrize('layout', ['bert', 'distilbert', 'roberta'])
def test_onnx_logits_equal_transformers_and_ours(layout, tmp_path):
  model = hf_classifier(layout)
  src = saved(model, tmp_path / 'hf')
  out = tmp_path / 'onnx'
  assert export(src, out) == 0
  ids, mask, types = rows(layout)
  got = ort_logits(str(out), ids, mask, types)
  np.testing.assert_allclose(got, their_logits(model, layout, ids, mask, types),
                             atol=ATOL, rtol=0)
  m = convert.load_model(src)
  cfg, params, head = inference.prepare(m.config, m.params, m.head)
  ours = inference.forward(cfg, params, head, {
      'input_ids': ids, 'attention_mask': mask,
      'token_type_ids': types if m.config.type_vocab_size else 0 * types})
  np.testing.assert_allclose(got, np.asarray(ours), atol=ATOL, rtol=0)
  # The folder is what Optimum and `predict` read: the HF config with the
  # labels, the graph's inputs named as HF's ONNX exports name them.
  config = json.load(open(out / 'config.json'))
  assert [config['id2label'][str(i)] for i in range(3)] == list(LABELS)
  info = json.load(open(out / onnx_out.INFO))
  assert info['quantize'] is None and info['labels'] == list(LABELS)
  want = ['input_ids', 'attention_mask'] + (
      ['token_type_ids'] if layout != 'distilbert' else [])
  assert [i.name for i in onnx.load(str(out / 'model.onnx')).graph.input] == want
  onnx.checker.check_model(str(out / 'model.onnx'))


def test_int8_is_quantized_smaller_and_close(tmp_path):
  model = hf_classifier('distilbert', seed=3)
  src = saved(model, tmp_path / 'hf')
  assert export(src, tmp_path / 'f32') == 0
  assert export(src, tmp_path / 'int8', '--quantize=int8') == 0
  ops = {n.op_type for n in onnx.load(str(tmp_path / 'int8' / 'model.onnx')).graph.node}
  assert {'DynamicQuantizeLinear', 'MatMulInteger'} <= ops
  assert sorted(os.listdir(tmp_path / 'int8')) == sorted(
      os.listdir(tmp_path / 'f32'))         # no float copy left behind
  size = lambda d: os.path.getsize(tmp_path / d / 'model.onnx')
  assert size('int8') < 0.5 * size('f32')
  ids, mask, types = rows('distilbert')
  f32 = ort_logits(str(tmp_path / 'f32'), ids, mask, types)
  int8 = ort_logits(str(tmp_path / 'int8'), ids, mask, types)
  assert np.abs(f32).max() > 0.5                      # O(1) logits
  np.testing.assert_allclose(int8, f32, atol=0.05, rtol=0)
  assert not np.array_equal(int8, f32)
  assert json.load(open(tmp_path / 'int8' / onnx_out.INFO))['quantize'] == 'int8'


@pytest.fixture(scope='module')
def served(tmp_path_factory):
  """A 2-label BERT classifier on pairs with BERT's vocabulary, as an HF
  folder and as ONNX."""
  if not os.path.isfile(VOCAB_TXT):
    pytest.skip('no shared vocabulary')
  root = tmp_path_factory.mktemp('served')
  config = transformers.BertConfig(
      vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=64, max_position_embeddings=64, num_labels=2,
      id2label={0: 'no', 1: 'yes'}, label2id={'no': 0, 'yes': 1})
  model = transformers.BertForSequenceClassification(config).eval()
  from helpers.parity import randomize_
  randomize_(model, 5)
  hf = saved(model, root / 'hf')
  transformers.BertTokenizer(VOCAB_TXT, model_max_length=64).save_pretrained(hf)
  assert export(hf, root / 'onnx') == 0
  return hf, str(root / 'onnx')


def test_predict_on_onnxruntime_equals_the_xla_path(served, tmp_path):
  hf, folder = served
  records = [{'text': 'a man is playing a guitar .',
              'text_pair': 'someone plays music .'},
             {'text': 'the cat sat on the mat'},
             {'text': 'short', 'text_pair': 'the quick brown fox jumps over '
              'the lazy dog ' * 12}]                  # cut at --max_len
  src = tmp_path / 'in.jsonl'
  src.write_text(''.join(json.dumps(r) + '\n' for r in records * 3))
  outs = {}
  for runtime, model in (('xla', hf), ('onnxruntime', folder)):
    outs[runtime] = str(tmp_path / f'{runtime}.jsonl')
    assert predict.main([f'--model={model}', f'--input={src}',
                         f'--output={outs[runtime]}', f'--runtime={runtime}',
                         '--batch_size=4', '--max_len=48', '--all_scores',
                         '--no_progress']) == 0
  read = lambda p: [json.loads(l) for l in open(p)]
  xla, onnx_rows = read(outs['xla']), read(outs['onnxruntime'])
  assert len(xla) == len(onnx_rows) == 9
  for a, b in zip(xla, onnx_rows):
    assert [x['label'] for x in a] == [x['label'] for x in b]
    np.testing.assert_allclose([x['score'] for x in a], [x['score'] for x in b],
                               atol=ATOL, rtol=0)
  assert max(x['score'] for row in xla for x in row) > 0.6   # not uniform


def one_line(capsys) -> str:
  err = capsys.readouterr().err.strip()
  assert '\n' not in err and 'Traceback' not in err
  return err


def test_bad_input_is_one_line_and_writes_nothing(served, tmp_path, capsys):
  hf, folder = served
  mlm = tmp_path / 'mlm'
  transformers.BertForMaskedLM(transformers.BertConfig(
      vocab_size=57, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
      intermediate_size=64, max_position_embeddings=40)).save_pretrained(str(mlm))
  capsys.readouterr()                  # transformers' own progress bars
  assert export(str(mlm), tmp_path / 'x') == 2
  assert 'no classifier head' in one_line(capsys)
  assert not (tmp_path / 'x').exists()
  assert convert_main(['export', '--quantize=int8', f'--checkpoint={hf}',
                       f'--output={tmp_path / "y"}']) == 2
  assert '--format=onnx' in one_line(capsys)
  # An existing output is kept unless --overwrite.
  before = sorted(os.listdir(folder))
  stamp = os.path.getmtime(os.path.join(folder, 'model.onnx'))
  assert export(hf, folder) == 2
  assert 'already exists' in one_line(capsys)
  assert sorted(os.listdir(folder)) == before
  assert os.path.getmtime(os.path.join(folder, 'model.onnx')) == stamp
  src = tmp_path / 'in.txt'
  src.write_text('hello\n')
  # --runtime=onnxruntime on a folder without an ONNX model, and the reverse.
  run = lambda model, *f: predict.main([f'--model={model}', f'--input={src}',
                                        f'--output={tmp_path / "o.jsonl"}',
                                        '--no_progress', *f])
  assert run(hf, '--runtime=onnxruntime') == 2
  assert 'has no model.onnx' in one_line(capsys)
  assert run(folder) == 2
  assert '--runtime=onnxruntime' in one_line(capsys)
  assert run(folder, '--runtime=onnxruntime', '--dtype=bfloat16') == 2
  assert 'drop --dtype' in one_line(capsys)
  assert not (tmp_path / 'o.jsonl').exists()


def test_without_onnxruntime_the_extra_is_named(served, tmp_path, capsys,
                                                monkeypatch):
  import sys
  hf, folder = served
  # As if it were not installed: an import of it raises ImportError.
  for name in [n for n in sys.modules if n.split('.')[0] == 'onnxruntime']:
    monkeypatch.setitem(sys.modules, name, None)
  monkeypatch.setitem(sys.modules, 'onnxruntime', None)
  src = tmp_path / 'in.txt'
  src.write_text('hello\n')
  assert predict.main([f'--model={folder}', f'--input={src}',
                       f'--output={tmp_path / "o.jsonl"}',
                       '--runtime=onnxruntime', '--no_progress']) == 2
  assert "pip install 'jaxdistil[onnx]'" in one_line(capsys)
  assert export(hf, tmp_path / 'q', '--quantize=int8') == 2
  assert "pip install 'jaxdistil[onnx]'" in one_line(capsys)
  assert not (tmp_path / 'q').exists()
