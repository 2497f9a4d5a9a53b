"""`glue --save` writes a Hugging Face classifier that `pipeline` serves with
our numbers, and `glue --eval_only` scores a classifier's own head as
`transformers` scores it.

The models are tiny and random (BERT-base's uncased vocabulary from the shared
data, so the tokenizer is the real one); the tasks are the first rows of the
shared SST-2 and MRPC and a made-up STS-B. Tolerances: pipeline scores within
1e-4 of ours (its softmax over our logits, or the raw STS-B score); our
logits of an imported classifier within 1e-5 of `transformers`'.
"""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from helpers import glue_subset, write_stsb  # noqa: E402
from jaxdistil import convert  # noqa: E402
from jaxdistil.data import tokenizer as tokenizer_lib  # noqa: E402
from jaxdistil.glue import __main__ as glue_cli  # noqa: E402
from jaxdistil.glue import data as glue_data  # noqa: E402
from jaxdistil.glue import finetune, scoring, tasks  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLUE = os.path.join(ROOT, '..', 'shared', 'data', 'glue')
VOCAB = os.path.join(ROOT, '..', 'shared', 'data', 'vocab', 'vocab.txt')
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (os.path.isdir(GLUE) and os.path.isfile(VOCAB)), reason='no shared data')]


def tiny_hf(layout: str, path: str, seed: int = 0, classifier: dict | None = None):
  """A tiny random HF model with BERT's uncased tokenizer, saved at `path`:
  a masked LM, or with `classifier` ({'num_labels', 'id2label'}) a classifier."""
  torch.manual_seed(seed)
  size = dict(vocab_size=30522, max_position_embeddings=64)
  if layout == 'distilbert':
    config = transformers.DistilBertConfig(dim=32, n_layers=2, n_heads=2,
                                           hidden_dim=64, **size,
                                           **(classifier or {}))
    cls = (transformers.DistilBertForSequenceClassification if classifier
           else transformers.DistilBertForMaskedLM)
  else:
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     **size, **(classifier or {}))
    cls = (transformers.BertForSequenceClassification if classifier
           else transformers.BertForMaskedLM)
  model = cls(config).eval()
  model.save_pretrained(path)
  transformers.BertTokenizer(VOCAB, model_max_length=64).save_pretrained(path)
  return model


@pytest.fixture(scope='module')
def glue_dir(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp('glue'))
  glue_subset(GLUE, folder, 'SST-2', 48, 24)
  glue_subset(GLUE, folder, 'MRPC', 48, 24)
  write_stsb(folder, 48, 24)
  return folder


def run_glue(args) -> int:
  return glue_cli.main(args + ['--noprogress', '--max_len=64', '--batch_size=8'])


def pipeline_scores(path: str, task, examples) -> np.ndarray:
  """[N, outputs]: every label's score from `pipeline`, in the task's label
  order (the raw score for a regression)."""
  pipe = transformers.pipeline('text-classification', model=path, device='cpu')
  if examples.text_b is None:
    inputs = list(examples.text_a)
  else:
    inputs = [{'text': a, 'text_pair': b}
              for a, b in zip(examples.text_a, examples.text_b)]
  out = pipe(inputs, top_k=None, batch_size=4, truncation=True)
  names = pipe.model.config.id2label
  order = [names[i] for i in range(len(names))]
  return np.array([[{d['label']: d['score'] for d in row}[n] for n in order]
                   for row in out])


def our_outputs(path: str, task, examples) -> np.ndarray:
  loaded = convert.load_model(path)
  tok = tokenizer_lib.load(path)
  arrays = glue_data.encode(examples, tok, 64)
  head, notice = scoring.task_head(task, loaded.head, loaded.classifier, path)
  assert notice is None
  logits = scoring.Predictor(loaded.config, loaded.params, head,
                             finetune.FinetuneConfig(max_len=64)).logits(arrays)
  if task.is_regression:
    return logits
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize('layout,task_name', [
    ('distilbert', 'SST-2'), ('bert', 'MRPC'), ('distilbert', 'STS-B')])
def test_a_saved_classifier_serves_our_scores_in_pipeline(
    layout, task_name, glue_dir, tmp_path):
  task = tasks.get(task_name)
  base, saved = str(tmp_path / 'base'), str(tmp_path / 'saved')
  tiny_hf(layout, base)
  out = str(tmp_path / 'r.json')
  assert run_glue([f'--model={base}', f'--task={task_name}',
                   f'--data_dir={glue_dir}', '--seeds=3', '--max_steps=6',
                   f'--save={saved}', f'--output={out}']) == 0
  result = json.load(open(out))['tasks'][task_name]
  assert result['saved']['seed'] == finetune.median_seed(result['per_seed'])
  config = json.load(open(os.path.join(saved, 'config.json')))
  assert config['architectures'] == [
      'DistilBertForSequenceClassification' if layout == 'distilbert'
      else 'BertForSequenceClassification']
  if task.is_regression:
    assert config['problem_type'] == 'regression'
  else:
    assert list(config['id2label'].values()) == (
        ['negative', 'positive'] if task_name == 'SST-2'
        else ['not_equivalent', 'equivalent'])
  dev = glue_data.read_split(task, 'dev', glue_dir, 'tsv')
  np.testing.assert_allclose(pipeline_scores(saved, task, dev),
                             our_outputs(saved, task, dev), atol=1e-4, rtol=0)
  # Scored again by its own head, it gives the median seed's dev score.
  out2 = str(tmp_path / 'again.json')
  assert run_glue([f'--model={saved}', f'--task={task_name}',
                   f'--data_dir={glue_dir}', '--eval_only',
                   f'--output={out2}']) == 0
  again = json.load(open(out2))['tasks'][task_name]
  chosen = [r for r in result['per_seed'] if r['seed'] == result['saved']['seed']]
  assert again['eval_only'] and again['score'] == pytest.approx(
      chosen[0]['score'], abs=1e-6)


def test_eval_only_scores_an_hf_classifier_as_transformers_does(glue_dir, tmp_path,
                                                                capsys):
  # MNLI-style trap: the labels in another order than the task's; SST-2's
  # names in reverse, so the head must be reordered to be scored right.
  path = str(tmp_path / 'clf')
  model = tiny_hf('bert', path, seed=1, classifier={
      'num_labels': 2, 'id2label': {0: 'POSITIVE', 1: 'NEGATIVE'},
      'label2id': {'POSITIVE': 0, 'NEGATIVE': 1}})
  task = tasks.get('SST-2')
  dev = glue_data.read_split(task, 'dev', glue_dir, 'tsv')
  tok = transformers.BertTokenizer.from_pretrained(path)
  enc = tok(dev.text_a, padding=True, truncation=True, max_length=64,
            return_tensors='pt')
  with torch.no_grad():
    theirs = model(**enc).logits.numpy()
  ours = our_outputs(path, task, dev)           # softmax, task order
  e = np.exp(theirs - theirs.max(-1, keepdims=True))
  np.testing.assert_allclose(ours, (e / e.sum(-1, keepdims=True))[:, ::-1],
                             atol=1e-5, rtol=0)
  out = str(tmp_path / 'e.json')
  assert run_glue([f'--model={path}', '--task=SST-2', f'--data_dir={glue_dir}',
                   '--eval_only', f'--output={out}']) == 0
  got = json.load(open(out))['tasks']['SST-2']
  their_accuracy = float(np.mean(theirs.argmax(-1) == 1 - dev.labels))
  assert got['metrics']['accuracy'] == pytest.approx(their_accuracy, abs=1e-9)


def test_generic_labels_are_taken_in_order_with_a_notice(glue_dir, tmp_path,
                                                         capsys):
  path = str(tmp_path / 'clf')
  tiny_hf('distilbert', path, classifier={'num_labels': 2})
  assert run_glue([f'--model={path}', '--task=SST-2', f'--data_dir={glue_dir}',
                   '--eval_only']) == 0
  assert 'LABEL_0, LABEL_1: taken in order' in capsys.readouterr().out


def test_bad_classifier_input_is_one_line_and_writes_nothing(glue_dir, tmp_path,
                                                              capsys):
  mlm, clf = str(tmp_path / 'mlm'), str(tmp_path / 'clf')
  tiny_hf('distilbert', mlm)
  tiny_hf('distilbert', clf, classifier={
      'num_labels': 3, 'id2label': {0: 'a', 1: 'b', 2: 'c'},
      'label2id': {'a': 0, 'b': 1, 'c': 2}})
  full = tmp_path / 'full'
  full.mkdir()
  (full / 'keep.txt').write_text('mine')
  cases = [
      ([f'--model={mlm}', '--task=SST-2,MRPC', f'--save={tmp_path / "s"}'],
       '--save keeps one fine-tuned model'),
      ([f'--model={mlm}', '--task=SST-2', f'--save={full}'],
       'already exists and is not empty'),
      ([f'--model={mlm}', '--task=SST-2', '--eval_only'],
       'has none: fine-tune it'),
      ([f'--model={clf}', '--task=SST-2', '--eval_only'],
       'is a classifier for 3 classes, but SST-2 is 2 classes'),
      ([f'--model={clf}', '--task=STS-B', '--eval_only'],
       'but STS-B is a regression'),
  ]
  for args, want in cases:
    capsys.readouterr()
    assert run_glue(args + [f'--data_dir={glue_dir}']) == 2, args
    err = capsys.readouterr().err.strip()
    assert want in err and '\n' not in err, (args, err)
  assert (full / 'keep.txt').read_text() == 'mine'
  assert not os.path.exists(tmp_path / 's')
