"""`python -m jaxdistil.replicate`: bad input in one line, the tables computed
from results as GLUE does, and (slow) every stage end to end on a tiny random
teacher, resumed and partly redone."""

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from jaxdistil import ablate, config_lib, curves, replicate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_GLUE = os.path.join(ROOT, '..', 'shared', 'data', 'glue')
TASKS = ('CoLA', 'SST-2', 'MRPC', 'WNLI')
WORDS = [f'w{i}' for i in range(200)]


def make_teacher(path, with_head=False):
  """A tiny random BERT in the HF format, BertModel (no head) by default."""
  import transformers
  vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + WORDS
  cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32,
                                num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=64)
  cls = transformers.BertForMaskedLM if with_head else transformers.BertModel
  cls(cfg).save_pretrained(str(path))
  (path / 'vocab.txt').write_text('\n'.join(vocab) + '\n')
  return str(path)


def make_corpus(folder):
  rng = random.Random(0)
  folder.mkdir()
  for k in range(3):
    lines = [' '.join(rng.choice(WORDS[:60]) for _ in range(rng.randint(12, 40)))
             for _ in range(300)]
    (folder / f'part{k}.txt').write_text('\n\n'.join(lines) + '\n')
  return str(folder / '*.txt')


def make_glue(folder, tasks=TASKS, rows=40):
  """The first rows of the shared GLUE files (real formats: CoLA without a
  header, MRPC with its byte-order mark), or a tiny SST-2-like file each."""
  for t in tasks:
    (folder / t).mkdir(parents=True)
    for split in ('train', 'dev'):
      src = os.path.join(SHARED_GLUE, t, f'{split}.tsv')
      with open(src, 'rb') as f:
        head = b''.join(f.readline() for _ in range(rows))
      (folder / t / f'{split}.tsv').write_bytes(head)
  return str(folder)


needs_glue = pytest.mark.skipif(not os.path.isdir(SHARED_GLUE),
                                reason='needs ../shared/data/glue')


def cli(*args):
  return subprocess.run([sys.executable, '-m', 'jaxdistil.replicate', *args],
                        capture_output=True, text=True, cwd=ROOT, timeout=1500)


# ---------------------------------------------------------------------------
# Bad input: one line each, before any work

def test_an_unknown_budget_is_named(tmp_path, capsys):
  rc = replicate.main([f'--teacher={tmp_path}', f'--workdir={tmp_path}/w',
                       '--config=replicate.py:huge', f'--glue_data={tmp_path}'])
  err = capsys.readouterr().err
  assert rc == 2 and "unknown budget 'huge'" in err and 'tiny, small' in err
  assert len(err.strip().splitlines()) == 1
  assert not os.path.exists(tmp_path / 'w')


def test_a_missing_teacher_directory_is_named(tmp_path, capsys):
  rc = replicate.main([f'--teacher={tmp_path}/nowhere', f'--workdir={tmp_path}/w',
                       '--config=replicate.py:tiny', f'--glue_data={tmp_path}'])
  err = capsys.readouterr().err
  assert rc == 2 and 'nowhere' in err and 'no such directory' in err
  assert len(err.strip().splitlines()) == 1
  assert not os.path.exists(tmp_path / 'w')


@needs_glue
def test_glue_data_missing_a_task_is_named(tmp_path, capsys):
  teacher = make_teacher(tmp_path / 'teacher')
  glue = make_glue(tmp_path / 'glue', tasks=('CoLA', 'SST-2', 'WNLI'))
  capsys.readouterr()            # transformers' own progress bar, when saving
  rc = replicate.main([f'--teacher={teacher}', f'--workdir={tmp_path}/w',
                       '--config=replicate.py:tiny', f'--glue_data={glue}'])
  err = capsys.readouterr().err
  assert rc == 2 and 'lacks a task' in err and 'MRPC' in err, err
  assert len(err.strip().splitlines()) == 1
  assert not os.path.exists(tmp_path / 'w')


@needs_glue
def test_a_headless_teacher_without_the_head_stage_is_refused(tmp_path, capsys):
  teacher = make_teacher(tmp_path / 'teacher')
  glue = make_glue(tmp_path / 'glue')
  capsys.readouterr()
  rc = replicate.main([f'--teacher={teacher}', f'--workdir={tmp_path}/w',
                       '--config=replicate.py:tiny', f'--glue_data={glue}', '--nohead'])
  err = capsys.readouterr().err
  assert rc == 2 and 'no trained masked-LM head' in err and 'drop --nohead' in err
  assert len(err.strip().splitlines()) == 1


def test_head_detection_reads_names_and_the_fresh_head_mark(tmp_path):
  from jaxdistil.convert import model_dir
  from jaxdistil.convert.hf_in import import_hf
  bare = make_teacher(tmp_path / 'bare')
  headed = make_teacher(tmp_path / 'headed', with_head=True)
  assert not replicate.has_trained_head(bare)
  assert replicate.has_trained_head(headed)
  m = import_hf(bare, init_missing_head=True)
  assert m.fresh_head
  model_dir.save_model(str(tmp_path / 'imported'), m.config, m.params, m.layout,
                       fresh_head=m.fresh_head)
  assert not replicate.has_trained_head(str(tmp_path / 'imported'))
  assert model_dir.load_model(str(tmp_path / 'imported')).fresh_head
  m = import_hf(headed)
  model_dir.save_model(str(tmp_path / 'kept'), m.config, m.params, m.layout,
                       fresh_head=m.fresh_head)
  assert replicate.has_trained_head(str(tmp_path / 'kept'))


# ---------------------------------------------------------------------------
# The plan, the baseline variant, the tables

def test_budgets_are_train_configs_that_validate():
  for budget in ('tiny', 'small'):
    plan = plan_of(budget)
    assert sorted(plan.variants) == sorted(ablate.KNOWN)
    assert tuple(plan.variants[:2]) == ('full', 'mlm_only')   # table 1's rows first
    head = plan.head
    assert head.loss.alpha_ce == 0 and head.loss.alpha_cos == 0
    assert head.student_init.source == 'teacher' and not head.eval_teacher
    assert plan.distil.loss.alpha_ce == 5.0 and plan.distil.loss.temperature == 2.0
  small = config_lib.load_file(os.path.join(ROOT, 'configs/replicate.py:small,distil'))
  assert small.model.student.num_layers == 3
  assert tuple(small.student_init.layer_map) == (0, 2, 5)


def test_the_mlm_only_baseline_drops_both_teacher_terms():
  c = ablate.apply(plan_of('tiny').distil, 'mlm_only')
  assert (c.loss.alpha_ce, c.loss.alpha_cos) == (0.0, 0.0)
  assert c.loss.alpha_mlm == 2.0 and c.student_init.source == 'teacher'


def plan_of(budget):
  return config_lib.load_file(os.path.join(ROOT, f'configs/replicate.py:{budget}'))


def fake_task(name, score, seeds):
  return {'task': name, 'score': score, 'metrics': {},
          'per_seed': [{'score': score}] * seeds}


def test_tables_compute_the_macro_score_retention_and_deltas(tmp_path):
  results = replicate.Results(str(tmp_path))
  plan = plan_of('small')
  scores = {'teacher': (40.0, 90.0, 80.0, 50.0), 'full': (30.0, 86.0, 78.0, 56.0),
            'mlm_only': (20.0, 84.0, 75.0, 56.0), 'no_ce': (28.0, 85.0, 78.0, 56.0),
            'no_cos': (29.0, 85.0, 77.0, 56.0), 'no_mlm': (30.0, 86.0, 77.0, 56.0),
            'random_init': (5.0, 80.0, 70.0, 56.0)}
  for name, s in scores.items():
    for task, score in zip(TASKS, s):
      n = 1 if name == 'no_ce' or (name == 'no_cos' and task == 'WNLI') else 3
      results.put(fake_task(task, score, n), 'glue', name, f'{task}.json')
  for name in ['teacher'] + list(plan.variants):
    results.put({'steps': 400, 'real_tokens': 1000, 'train_seconds': 60.0,
                 'heldout': {'eval/mlm_accuracy': 0.25, 'eval/kl_to_teacher': 0.5}},
                *(['teacher.json'] if name == 'teacher' else ['distil', f'{name}.json']))
  text = replicate.tables(results, plan, list(TASKS))
  macro = {n: np.mean(s) for n, s in scores.items()}    # GLUE: the plain mean
  assert f'{100 * macro["full"] / macro["teacher"]:.1f}%' in text
  assert f'{macro["full"] - macro["mlm_only"]:+.2f} points' in text
  for v in ('no_ce', 'no_cos', 'no_mlm', 'random_init'):
    assert f'| {v} | {macro[v]:.2f} | {macro[v] - macro["full"]:+.2f} | ' in text
  assert '| random_init |' in text and '-3.69' in text
  # Seeds as run, read from the results: a range where the tasks differ.
  assert f'| no_ce | {macro["no_ce"]:.2f} | ' in text and '| -2.96 | 1 |' in text
  assert '| -1.46 | 1-3 |' in text and '| -3.69 | 3 |' in text
  assert 'Teacher (3 seeds)' in text and '(1 seed)' not in text
  assert text.count('| 0.2500 | 0.5000 | 400 |') == 7


def test_a_run_stopped_early_records_nothing(tmp_path, monkeypatch):
  # A SIGTERM makes train save and return early; replicate must not take the
  # stopped run for a finished one (it once wrote a 40-step student's result).
  from jaxdistil import train
  monkeypatch.setattr(train, 'train', lambda c, w: {'step': 3, 'preempted': True})
  results = replicate.Results(str(tmp_path / 'results'))
  c = plan_of('tiny').distil
  with pytest.raises(replicate.ReplicateError,
                     match=r'x: training stopped at step 3 of 4 \(SIGTERM\); '
                           r'nothing was recorded: rerun the same command'):
    replicate.train_stage(results, 'x', c, str(tmp_path / 'w'), 'cmd')
  assert not os.path.exists(tmp_path / 'results')


def test_run_summary_counts_a_resumed_runs_steps_once(tmp_path):
  rows = [{'step': 1, 'tokens': 10, 'step_s': 1.0, 'loss': 3.0},
          {'step': 2, 'tokens': 10, 'step_s': 1.0, 'loss': 2.0,
           'eval/mlm_accuracy': 0.1},
          {'step': 2, 'tokens': 10, 'step_s': 2.0, 'loss': 2.5,   # redone
           'eval/mlm_accuracy': 0.2},
          {'step': 3, 'tokens': 12, 'step_s': 1.0, 'loss': 1.5}]
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  s = replicate.run_summary(str(tmp_path))
  assert s['steps'] == 3 and s['real_tokens'] == 32 and s['train_seconds'] == 4.0
  assert s['heldout'] == {'eval/mlm_accuracy': 0.2} and s['final_loss'] == 1.5


def test_curves_draw_every_run_with_evaluations(tmp_path):
  for name, kl in (('full', True), ('mlm_only', False)):
    d = tmp_path / 'runs' / name
    d.mkdir(parents=True)
    rows = []
    for step in range(1, 7):
      row = {'step': step, 'loss': 1.0 / step}
      if step % 2 == 0:
        row['eval/mlm_accuracy'] = 0.1 * step
        if kl:
          row['eval/kl_to_teacher'] = 1.0 / step
      rows.append(row)
    (d / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  out = tmp_path / 'curves.png'
  assert curves.main([f'--runs={tmp_path / "runs"}', f'--output={out}']) == 0
  assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  data = curves.eval_curves(str(tmp_path / 'runs' / 'full'))
  assert data['eval/mlm_accuracy'] == ([2, 4, 6], [0.2, 0.4, 0.6000000000000001])
  assert 'eval/kl_to_teacher' not in curves.eval_curves(str(tmp_path / 'runs' / 'mlm_only'))
  assert curves.main([f'--runs={tmp_path / "none"}', f'--output={out}']) == 2


# ---------------------------------------------------------------------------
# End to end: every stage on a tiny teacher, then a resume that skips, then a
# fresh machine that lost one student

@pytest.mark.slow
@needs_glue
def test_every_stage_end_to_end_then_resume(tmp_path):
  teacher = make_teacher(tmp_path / 'teacher')
  corpus = make_corpus(tmp_path / 'corpus')
  glue = make_glue(tmp_path / 'glue')
  work, res = tmp_path / 'work', tmp_path / 'results'
  args = [f'--teacher={teacher}', f'--workdir={work}', '--config=replicate.py:tiny',
          f'--corpus={corpus}', f'--glue_data={glue}', f'--results={res}',
          '--noprogress']
  proc = cli(*args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert '## Table 1' in proc.stdout and '## Table 4' in proc.stdout
  for name in ablate.KNOWN:
    summary = json.loads((res / 'distil' / f'{name}.json').read_text())
    assert summary['steps'] == 4 and summary['real_tokens'] > 0
    assert summary['machine']['matmul_gflops'] > 0
    assert 'eval/mlm_accuracy' in summary['heldout']
    # Every student, the MLM-only one too, is compared with the teacher.
    assert 'eval/kl_to_teacher' in summary['heldout'], name
    assert (res / 'runs' / name / 'metrics.jsonl').is_file()
  teacher_summary = json.loads((res / 'teacher.json').read_text())
  assert 'eval/kl_to_teacher' not in teacher_summary['heldout']
  full = json.loads((res / 'distil' / 'full.json').read_text())['heldout']
  # The teacher's held-out accuracy, measured by the head run and by a
  # student's run on the same masked batches, is the same number.
  np.testing.assert_allclose(teacher_summary['heldout']['eval/mlm_accuracy'],
                             full['eval/teacher_mlm_accuracy'], atol=1e-6)
  for name in ('teacher', 'full'):
    r = json.loads((res / 'glue' / name / 'MRPC.json').read_text())
    assert len(r['per_seed']) == 2          # table 1's rows: several seeds
  assert len(json.loads((res / 'glue' / 'no_ce' / 'MRPC.json').read_text())
             ['per_seed']) == 1
  table = (res / 'tables.md').read_text().strip()
  assert proc.stdout.strip().endswith(table)

  # Rerun: nothing to do.
  again = cli(*args)
  assert again.returncode == 0 and 'training in' not in again.stderr
  assert again.stdout.strip() == table

  # More seeds for table 1's rows: the stored seeds are kept and only the new
  # one runs, with no training.
  before = json.loads((res / 'glue' / 'full' / 'MRPC.json').read_text())
  more = cli(*args, '--config.glue.seeds_table1=3')
  assert more.returncode == 0, more.stderr[-3000:]
  assert 'training in' not in more.stderr
  assert more.stderr.count('stored: topping up') == 4    # teacher, full x 2 tasks
  after = json.loads((res / 'glue' / 'full' / 'MRPC.json').read_text())
  assert after['per_seed'][:2] == before['per_seed']
  assert [r['seed'] for r in after['per_seed']] == [0, 1, 2]
  assert [s['seeds'] for s in after['sessions']] == [2, 1]
  assert after['score'] == np.median([r['score'] for r in after['per_seed']])
  assert 'Teacher (3 seeds)' in more.stdout and '| full |' in more.stdout
  assert len(json.loads((res / 'glue' / 'no_ce' / 'MRPC.json').read_text())
             ['per_seed']) == 1

  # A fresh machine (no workdir) where one student's GLUE is missing: only the
  # teacher's head and that student are trained again.
  import shutil
  shutil.rmtree(work)
  (res / 'glue' / 'no_cos' / 'SST-2.json').unlink()
  third = cli(*args)
  assert third.returncode == 0, third.stderr[-3000:]
  trained = [l for l in third.stderr.splitlines() if 'training in' in l]
  assert [l.split(':')[1].strip() for l in trained] == ['teacher', 'no_cos']
  builds = json.loads((res / 'teacher.json').read_text())['builds']
  assert len(builds) == 2
  assert (res / 'glue' / 'no_cos' / 'SST-2.json').is_file()
  assert not (res / 'glue' / 'teacher' / 'CoLA.json').exists()   # not in tiny


def test_train_with_a_headless_teacher_names_the_commands_that_work(tmp_path):
  from helpers import tiny_config
  from jaxdistil import build
  from jaxdistil.config_lib import ConfigError
  teacher = make_teacher(tmp_path / 'bare')
  c = tiny_config(data='synthetic')
  c.teacher = teacher
  with pytest.raises(ConfigError) as info:
    build.build(c)
  msg = str(info.value)
  assert '\n' not in msg and 'no masked-LM head' in msg
  assert 'python -m jaxdistil.convert import' in msg and '--init_missing_head' in msg
  assert 'jaxdistil.replicate' in msg
