"""The offline quick start: shipped text and teacher, end to end.

The full command runs in a couple of minutes; here the student stage is cut to
a few steps. What is asserted is what the README promises: the shipped teacher
is a trained model (clearly better than always guessing the most frequent
token on held-out text), and one command leaves checkpoints, TensorBoard logs,
metrics and an HF student that `transformers` loads.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

# End-to-end runs (subprocesses, whole trainings): the full suite only.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHER = os.path.join(ROOT, 'jaxdistil', 'quickstart_data', 'teacher')


@pytest.fixture(scope='module')
def quickstart(tmp_path_factory):
  work = str(tmp_path_factory.mktemp('qs') / 'run')
  r = subprocess.run([sys.executable, '-m', 'jaxdistil.quickstart',
                      f'--workdir={work}', '--student_steps=6'], cwd=ROOT,
                     env=dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=''),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  return work, r.stdout


def test_shipped_files_are_there():
  for f in ('config.json', 'model.safetensors', 'vocab.txt'):
    assert os.path.isfile(os.path.join(TEACHER, f)), f
  with open(os.path.join(ROOT, 'jaxdistil', 'quickstart_data', 'SOURCES.md')) as f:
    sources = f.read()
  books = [f for f in os.listdir(os.path.dirname(TEACHER)) if f.endswith('.txt.gz')]
  assert len(books) == 6 and all(b in sources for b in books)


def test_quickstart_end_to_end(quickstart):
  work, stdout = quickstart
  with open(os.path.join(work, 'summary.json')) as f:
    summary = json.load(f)
  acc = summary['held_out_mlm_accuracy']
  assert 'held-out masked-LM accuracy' in stdout
  assert f'{acc["teacher"]:.3f}' in stdout and f'{acc["student"]:.3f}' in stdout
  assert summary['teacher']['layers'] == 4 and summary['student']['layers'] == 2
  student = os.path.join(work, 'student')
  assert os.path.isfile(os.path.join(student, 'DONE'))
  assert os.listdir(os.path.join(student, 'checkpoints'))
  assert any(f.startswith('events') for f in os.listdir(
      os.path.join(student, 'tensorboard')))
  rows = [json.loads(l) for l in open(os.path.join(student, 'metrics.jsonl'))]
  assert len(rows) == 6 and all(r['loss_ce'] > 0 and r['loss_cos'] > 0 for r in rows)

  # The shipped teacher is trained: on the held-out batches it beats always
  # predicting the most frequent training token by a wide margin.
  from jaxdistil.data import pipeline
  data = os.path.join(work, 'data')
  counts = np.load(os.path.join(data, 'token_counts.npy'))
  counts[:5] = 0                                   # special tokens
  top = int(np.argmax(counts))
  eval_data = pipeline.Pipeline(pipeline.InputConfig(data, batch_size=32,
                                                     split='eval'))
  hits = total = 0
  for _ in range(8):                               # config.eval_batches
    b = next(eval_data)
    sel = (b['mlm_mask'] > 0) & (b['attention_mask'] > 0)
    hits += int(np.sum(b['labels'][sel] == top))
    total += int(sel.sum())
  baseline = hits / total
  print(f'held-out accuracy: teacher {acc["teacher"]:.3f}, student '
        f'{acc["student"]:.3f}, most frequent token {baseline:.3f}')
  assert acc['teacher'] > baseline + 0.04

  transformers = pytest.importorskip('transformers')
  model = transformers.AutoModelForMaskedLM.from_pretrained(
      os.path.join(student, 'hf'))
  assert type(model).__name__ == 'DistilBertForMaskedLM'
  assert model.config.n_layers == 2
  tok = transformers.AutoTokenizer.from_pretrained(os.path.join(student, 'hf'))
  assert len(tok) == model.config.vocab_size


def test_rerun_resumes_without_training_again(quickstart):
  work, _ = quickstart
  before = os.path.getmtime(os.path.join(work, 'student', 'metrics.jsonl'))
  r = subprocess.run([sys.executable, '-m', 'jaxdistil.quickstart',
                      f'--workdir={work}', '--student_steps=6'], cwd=ROOT,
                     env=dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=''),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert os.path.getmtime(os.path.join(work, 'student', 'metrics.jsonl')) == before


def test_train_teacher_path_makes_and_saves_a_teacher(tmp_path):
  """--train_teacher: the way the shipped teacher was made (here a few steps)."""
  work, saved = str(tmp_path / 'run'), str(tmp_path / 'teacher')
  r = subprocess.run([sys.executable, '-m', 'jaxdistil.quickstart',
                      f'--workdir={work}', '--train_teacher', '--teacher_steps=3',
                      '--student_steps=2', f'--save_teacher={saved}'], cwd=ROOT,
                     env=dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=''),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  with open(os.path.join(work, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['teacher']['source'] == os.path.join(work, 'teacher')
  assert summary['teacher_training']['step'] == 3
  with open(os.path.join(work, 'vocab', 'vocab.txt')) as f:
    assert sum(1 for _ in f) == 4096              # learned WordPiece vocabulary
  transformers = pytest.importorskip('transformers')
  model = transformers.AutoModelForMaskedLM.from_pretrained(saved)
  assert model.config.n_layers == 4 and model.config.vocab_size == 4096
