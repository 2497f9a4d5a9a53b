"""`python -m jaxdistil.predict` against `transformers.pipeline`.

Tiny random HF classifiers (every parameter random at O(1) scales, so logits
reach about +-5 and the softmax is far from uniform) with BERT's uncased
vocabulary from the shared data: a 3-label DistilBERT on single sentences, a
2-label BERT on pairs, a DistilBERT regression. Texts are the shared SST-2
and MRPC dev sentences plus long ones that get truncated (pairs
longest-first). Tolerance: every score within 1e-4 (absolute) of
`pipeline('text-classification', truncation=True)`'s, the labels equal.
Conftest gives 8 CPU devices, so batches are sharded 8 ways.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from helpers.parity import randomize_  # noqa: E402
from jaxdistil import cli, inference, predict  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLUE = os.path.join(ROOT, '..', 'shared', 'data', 'glue')
VOCAB = os.path.join(ROOT, '..', 'shared', 'data', 'vocab', 'vocab.txt')
MAX_LEN = 64
ATOL = 1e-4
pytestmark = pytest.mark.skipif(
    not (os.path.isdir(GLUE) and os.path.isfile(VOCAB)), reason='no shared data')


def tiny_classifier(path: str, layout: str, seed: int, **classifier) -> str:
  size = dict(vocab_size=30522, max_position_embeddings=MAX_LEN, **classifier)
  if layout == 'distilbert':
    config = transformers.DistilBertConfig(dim=32, n_layers=2, n_heads=2,
                                           hidden_dim=64, **size)
    cls = (transformers.DistilBertForSequenceClassification if classifier
           else transformers.DistilBertForMaskedLM)
  else:
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     **size)
    cls = transformers.BertForSequenceClassification
  model = cls(config).eval()
  randomize_(model, seed)
  model.save_pretrained(path)
  transformers.BertTokenizer(VOCAB, model_max_length=MAX_LEN).save_pretrained(path)
  return path


def tsv_rows(task: str, n: int) -> list[list[str]]:
  with open(os.path.join(GLUE, task, 'dev.tsv'), encoding='utf-8-sig') as f:
    lines = f.read().split('\n')
  return [l.split('\t') for l in lines[1:n + 1]]


LONG = ('the quick brown fox jumps over the lazy dog while the committee '
        'deliberates at length about the budget ') * 4


@pytest.fixture(scope='module')
def data():
  sst = [r[0] for r in tsv_rows('SST-2', 30)] + [LONG, '', 'Ünïcödé ok!']
  mrpc = [(r[3], r[4]) for r in tsv_rows('MRPC', 20)]
  mrpc += [(LONG, 'short one .'), (LONG, LONG[:200]), ('tiny', LONG)]
  return {'single': sst, 'pairs': mrpc}


@pytest.fixture(scope='module')
def models(tmp_path_factory):
  root = tmp_path_factory.mktemp('models')
  labels = ['neg', 'neu', 'pos']
  return {
      'three': tiny_classifier(str(root / 'three'), 'distilbert', 0,
                               num_labels=3, id2label=dict(enumerate(labels)),
                               label2id={l: i for i, l in enumerate(labels)}),
      'pair': tiny_classifier(str(root / 'pair'), 'bert', 1, num_labels=2,
                              id2label={0: 'no', 1: 'yes'},
                              label2id={'no': 0, 'yes': 1}),
      'reg': tiny_classifier(str(root / 'reg'), 'distilbert', 2, num_labels=1,
                             problem_type='regression'),
      'mlm': tiny_classifier(str(root / 'mlm'), 'distilbert', 3),
  }


def pipeline_out(model: str, inputs: list, **kw) -> list:
  pipe = transformers.pipeline('text-classification', model=model, device='cpu')
  return pipe(inputs, batch_size=4, truncation=True, **kw)


def write_jsonl(path, rows) -> str:
  with open(path, 'w', encoding='utf-8') as f:
    for r in rows:
      f.write(json.dumps(r) + '\n')
  return str(path)


def read_jsonl(path) -> list:
  with open(path, encoding='utf-8') as f:
    return [json.loads(l) for l in f]


def run(argv) -> int:
  return predict.main(argv + ['--no_progress', f'--max_len={MAX_LEN}'])


def assert_same(ours: list, theirs: list) -> None:
  """Top-label dicts or lists of them: same labels in the same order, scores
  within ATOL."""
  assert len(ours) == len(theirs)
  for i, (a, b) in enumerate(zip(ours, theirs)):
    a, b = ([a], [b]) if isinstance(b, dict) else (a, b)
    assert [x['label'] for x in a] == [x['label'] for x in b], i
    np.testing.assert_allclose([x['score'] for x in a], [x['score'] for x in b],
                               atol=ATOL, rtol=0, err_msg=str(i))


def test_jsonl_single_texts_in_several_chunks_equal_pipeline(
    models, data, tmp_path, monkeypatch):
  texts = data['single']
  src = write_jsonl(tmp_path / 'in.jsonl', [{'text': t} for t in texts])
  out = str(tmp_path / 'out.jsonl')
  compiles = []
  real = inference.compile_buckets
  monkeypatch.setattr(inference, 'compile_buckets', lambda *a, **k: (
      compiles.extend(a[5]), real(*a, **k))[1])
  # batch 5 -> 8 (8 devices), chunks of 12: 3 chunks, the last one short
  args = cli.parse('predict', '', predict.define_flags, [
      f'--model={models["three"]}', f'--input={src}', f'--output={out}',
      '--batch_size=5', '--chunk_size=12', '--no_progress',
      f'--max_len={MAX_LEN}'])
  summary = predict.run(args)
  assert summary['examples'] == len(texts) and summary['batch_size'] == 8
  assert summary['devices'] == 8
  # each bucket compiled once across all chunks
  assert sorted(compiles) == summary['buckets_compiled']
  assert len(summary['buckets_compiled']) >= 3
  ours = read_jsonl(out)
  assert_same(ours, pipeline_out(models['three'], texts))
  assert {r['label'] for r in ours} <= {'neg', 'neu', 'pos'}


def test_pairs_jsonl_mixed_and_all_scores_equal_pipeline(models, data, tmp_path):
  pairs = data['pairs']
  rows = [{'text': a, 'text_pair': b} for a, b in pairs]
  rows[3] = {'text': pairs[3][0]}                     # one single text
  src = write_jsonl(tmp_path / 'in.jsonl', rows)
  out = str(tmp_path / 'out.jsonl')
  assert run([f'--model={models["pair"]}', f'--input={src}', f'--output={out}',
              '--batch_size=3', '--chunk_size=10', '--all_scores']) == 0
  inputs = [r if 'text_pair' in r else r['text'] for r in rows]
  theirs = pipeline_out(models['pair'], inputs, top_k=None)
  ours = read_jsonl(out)
  assert all(len(r) == 2 for r in ours)
  assert_same(ours, theirs)


def test_glue_tsv_with_task_equals_pipeline(models, tmp_path):
  out = str(tmp_path / 'out.jsonl')
  src = os.path.join(GLUE, 'MRPC', 'dev.tsv')
  n = 40
  small = tmp_path / 'dev.tsv'
  with open(src, encoding='utf-8') as f:
    small.write_text(''.join(f.readline() for _ in range(n + 1)), 'utf-8')
  assert run([f'--model={models["pair"]}', f'--input={small}', '--task=MRPC',
              f'--output={out}', '--batch_size=16']) == 0
  rows = tsv_rows('MRPC', n)
  theirs = pipeline_out(models['pair'],
                        [{'text': r[3], 'text_pair': r[4]} for r in rows])
  assert_same(read_jsonl(out), theirs)


def test_plain_text_regression_gives_the_raw_score(models, data, tmp_path):
  texts = data['single'][:17] + data['single'][-3:]
  src = tmp_path / 'in.txt'
  src.write_text('\n'.join(texts) + '\n', 'utf-8')
  out = str(tmp_path / 'out.jsonl')
  assert run([f'--model={models["reg"]}', f'--input={src}', f'--output={out}',
              '--batch_size=4']) == 0
  ours = read_jsonl(out)
  theirs = pipeline_out(models['reg'], texts)
  assert_same(ours, theirs)
  # raw, not squashed: a regression's scores leave [0, 1] here
  assert any(not 0 <= r['score'] <= 1 for r in ours)
  pipe = transformers.pipeline('text-classification', model=models['reg'])
  enc = pipe.tokenizer(texts, padding=True, truncation=True, return_tensors='pt')
  with torch.no_grad():
    raw = pipe.model(**enc).logits[:, 0].numpy()
  np.testing.assert_allclose([r['score'] for r in ours], raw, atol=ATOL, rtol=0)


def one_line_error(capsys, argv, want: str) -> str:
  capsys.readouterr()
  assert run(argv) == 2, argv
  err = capsys.readouterr().err.strip()
  assert want in err and '\n' not in err, (argv, err)
  return err


def test_bad_input_is_one_line_exit_2_and_writes_nothing(models, tmp_path,
                                                         capsys):
  model = f'--model={models["three"]}'
  out = tmp_path / 'out.jsonl'
  bad = tmp_path / 'bad.jsonl'
  bad.write_text('{"text": "fine"}\n\n{"text": "also fine"}\n{"text": "oops"\n',
                 'utf-8')
  one_line_error(capsys, [model, f'--input={bad}', f'--output={out}'],
                 'bad.jsonl:4: not valid JSON')
  # an error after a first chunk was written still leaves no output
  one_line_error(capsys, [model, f'--input={bad}', f'--output={out}',
                          '--chunk_size=1'], 'bad.jsonl:4:')
  assert not out.exists()
  assert os.listdir(tmp_path) == ['bad.jsonl']        # no temporary left
  nofield = write_jsonl(tmp_path / 'nofield.jsonl',
                        [{'text': 'a'}, {'sentence': 'b'}])
  one_line_error(capsys, [model, f'--input={nofield}', f'--output={out}'],
                 'nofield.jsonl:2: no "text" field')
  notstr = write_jsonl(tmp_path / 'notstr.jsonl', [{'text': 3}])
  one_line_error(capsys, [model, f'--input={notstr}', f'--output={out}'],
                 '"text" is int, not a string')
  short = tmp_path / 'short.tsv'
  short.write_text('Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t2\t3\ta\n',
                   'utf-8')
  one_line_error(capsys, [model, f'--input={short}', '--task=MRPC',
                          f'--output={out}'], 'short.tsv:2: 4 tab-separated')
  one_line_error(capsys, [f'--model={models["mlm"]}', f'--input={nofield}',
                          f'--output={out}'], 'has no classifier head')
  one_line_error(capsys, [model, f'--input={tmp_path / "none.txt"}',
                          f'--output={out}'], 'no such file')
  one_line_error(capsys, [model, f'--output={out}'], '--input is required')
  assert not out.exists()
  good = write_jsonl(tmp_path / 'good.jsonl', [{'text': 'a good film'}])
  out.write_text('keep me\n')
  one_line_error(capsys, [model, f'--input={good}', f'--output={out}'],
                 'exists: pass --overwrite')
  assert out.read_text() == 'keep me\n'
  assert run([model, f'--input={good}', f'--output={out}', '--overwrite']) == 0
  assert len(read_jsonl(out)) == 1


def test_the_module_runs_as_a_command(models, tmp_path):
  out = tmp_path / 'out.jsonl'
  out.write_text('x')
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.run(
      [sys.executable, '-m', 'jaxdistil.predict', f'--model={models["three"]}',
       f'--input={tmp_path}/in.txt', f'--output={out}'],
      capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip().startswith('jaxdistil.predict: ')
  assert '\n' not in proc.stderr.strip() and 'Traceback' not in proc.stderr
