"""`glue --teacher`: task distillation while fine-tuning.

- With alpha = 0 the teacher's term is off and the run equals plain
  fine-tuning, seed for seed (same metrics; final loss within 1e-6).
- The loss of a distillation step equals a NumPy computation of
  alpha*T^2*KL + (1-alpha)*CE from the same logits (1e-5).
- End to end: a saved classifier teaches a smaller student; its logits are
  cached in the workdir and served from there on a rerun; bad input is one line.
"""

import json
import os

import jax
import numpy as np
import pytest

from helpers import glue_subset, write_stsb
from jaxdistil.glue import __main__ as glue_cli
from jaxdistil.glue import finetune, heads, tasks
from jaxdistil.models import bert

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLUE = os.path.join(ROOT, '..', 'shared', 'data', 'glue')
VOCAB = os.path.join(ROOT, '..', 'shared', 'data', 'vocab')
needs_data = pytest.mark.skipif(
    not (os.path.isdir(GLUE) and os.path.isdir(VOCAB)), reason='no shared data')


@pytest.fixture(scope='module')
def tok():
  from jaxdistil.data import tokenizer
  return tokenizer.load(VOCAB)


def tiny(vocab_size, layers=1, seed=0):
  cfg = bert.BertConfig(vocab_size=vocab_size, hidden_size=32, num_layers=layers,
                        num_heads=2, intermediate_size=64,
                        max_position_embeddings=64, type_vocab_size=0,
                        layout='distilbert')
  return cfg, bert.init(cfg, jax.random.key(seed))


def teacher_and_student(tok, tmp_path, glue: str, teacher_steps: int,
                        common: list) -> str:
  """A 1-layer student (tmp_path/student) and a teacher: a 2-layer model
  (tmp_path/t_base) fine-tuned on SST-2 and saved by `glue --save`, both
  jaxdistil model directories; returns the teacher's folder."""
  from jaxdistil import convert
  for path, layers, seed in (('t_base', 2, 1), ('student', 1, 2)):
    c, p = tiny(len(tok), layers=layers, seed=seed)
    convert.save_model(str(tmp_path / path), c, p, 'distilbert',
                       tokenizer_dir=VOCAB)
  teacher = str(tmp_path / 'teacher')
  assert glue_cli.main([f'--model={tmp_path / "t_base"}', '--task=SST-2',
                        f'--max_steps={teacher_steps}', f'--save={teacher}']
                       + [a for a in common if not a.startswith('--task=')]) == 0
  return teacher


def test_a_distillation_step_computes_the_kd_loss_as_numpy_does():
  cfg, params = tiny(120)
  cfg = cfg.replace(hidden_dropout=0.0, attention_dropout=0.0)  # no dropout
  encoder, rest, _ = heads.split_encoder_params(cfg, params)
  p = {'encoder': encoder, 'head': heads.init_head(cfg, 3, jax.random.key(1))}
  rng = np.random.default_rng(0)
  ids = rng.integers(5, 120, size=(6, 10)).astype(np.int32)
  batch = {'input_ids': ids, 'attention_mask': np.ones_like(ids),
           'token_type_ids': np.zeros_like(ids),
           'labels': rng.integers(0, 3, 6).astype(np.int32),
           'weights': np.array([1, 1, 1, 1, 1, 0], np.float32),
           'label_weights': np.array([1, 1, 0, 1, 1, 1], np.float32),
           'teacher_logits': rng.standard_normal((6, 3)).astype(np.float32)}
  T, alpha = 3.0, 0.7
  import optax
  tx = optax.sgd(0.0)
  _, _, loss = finetune.train_step(cfg, tx, False, 0.0, p, tx.init(p), rest,
                                   batch, jax.random.key(0), 0,
                                   distill=(T, alpha, 0.5))
  s = np.asarray(finetune.forward(cfg, p, rest, batch, 0.0), np.float64)
  t = batch['teacher_logits'].astype(np.float64)

  def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))
  pt = np.exp(log_softmax(t / T))
  kl = (pt * (log_softmax(t / T) - log_softmax(s / T))).sum(-1)
  w = batch['weights']
  ce = -log_softmax(s)[np.arange(6), batch['labels']]
  # Each row's loss (the teacher's term alone on the unlabelled row), their
  # mean over the rows of weight 1.
  rows = np.where(batch['label_weights'] > 0, alpha * T * T * kl + (1 - alpha) * ce,
                  T * T * kl)
  want = (rows * w).sum() / w.sum()
  assert float(loss) == pytest.approx(want, abs=1e-5)


@needs_data
@pytest.mark.slow
def test_alpha_zero_is_plain_fine_tuning(tok, tmp_path):
  write_stsb(str(tmp_path), 40, 16)
  glue_subset(GLUE, str(tmp_path), 'SST-2', 40, 16)
  cfg, params = tiny(len(tok))
  for name in ('SST-2', 'STS-B'):
    kw = dict(seeds=2, max_steps=4, max_len=32, batch_size=8, progress=False)
    plain = finetune.run_task(name, str(tmp_path), cfg, params, tok, **kw)
    fake_teacher = lambda ex, split: np.random.default_rng(1).standard_normal(
        (len(ex), tasks.get(name).num_outputs)).astype(np.float32)
    kd0 = finetune.run_task(name, str(tmp_path), cfg, params, tok,
                            teacher=fake_teacher, kd_alpha=0.0, kd_beta=0.0, **kw)
    for a, b in zip(plain['per_seed'], kd0['per_seed']):
      assert a['final_loss'] == pytest.approx(b['final_loss'], abs=1e-6)
      for k in a['metrics']:
        assert a['metrics'][k] == pytest.approx(b['metrics'][k], abs=1e-6)
    assert kd0['config']['distill'] and 'distill' not in plain['config']


@needs_data
@pytest.mark.slow
def test_a_saved_teacher_distils_into_a_student_with_a_cache(tok, tmp_path, capsys):
  glue = str(tmp_path / 'glue')
  glue_subset(GLUE, glue, 'SST-2', 48, 16)
  glue_subset(GLUE, glue, 'MRPC', 16, 8)
  write_stsb(glue, 16, 8)
  # The teacher: a 2-layer model fine-tuned and saved by `glue --save`; the
  # student a 1-layer one. Both are jaxdistil model directories.
  common = ['--noprogress', '--max_len=32', '--batch_size=8', f'--data_dir={glue}']
  teacher = teacher_and_student(tok, tmp_path, glue, 6, common)
  work = str(tmp_path / 'work')
  run = lambda out, *extra: glue_cli.main(
      [f'--model={tmp_path / "student"}', f'--teacher={teacher}', '--task=SST-2',
       '--max_steps=4', f'--workdir={work}', f'--output={out}', '--kd_alpha=0.9',
       '--kd_temperature=4'] + list(extra) + common)
  assert run(str(tmp_path / 'a.json')) == 0
  cache = os.path.join(work, 'teacher_logits')
  files = os.listdir(cache)
  assert len(files) == 1
  stamp = os.stat(os.path.join(cache, files[0])).st_mtime_ns
  # The cached logits are the teacher's own, scored on the training texts.
  assert run(str(tmp_path / 'b.json')) == 0
  assert os.stat(os.path.join(cache, files[0])).st_mtime_ns == stamp
  a = json.load(open(tmp_path / 'a.json'))['tasks']['SST-2']
  b = json.load(open(tmp_path / 'b.json'))['tasks']['SST-2']
  assert a['per_seed'] == b['per_seed']
  assert a['config']['kd_alpha'] == 0.9 and a['config']['kd_temperature'] == 4
  # Online (the teacher inside the step, on the student's tokens: the same
  # tokenizer here) matches the cached logits on unchanged inputs. The cached
  # ones come from length-bucketed prediction batches, so the logits may
  # differ in the last bits: the losses agree to 1e-4, the metrics exactly.
  assert run(str(tmp_path / 'online.json'), '--kd_online',
             f'--workdir={tmp_path / "work_online"}') == 0
  c = json.load(open(tmp_path / 'online.json'))['tasks']['SST-2']
  for x, y in zip(a['per_seed'], c['per_seed']):
    assert x['final_loss'] == pytest.approx(y['final_loss'], abs=1e-4)
    assert x['metrics'] == pytest.approx(y['metrics'], abs=1e-9)
  # TinyBERT's stage 1 first, then the logits (online: it needs the
  # teacher's hidden states).
  assert run(str(tmp_path / 'stage1.json'), '--kd_online',
             '--kd_intermediate_steps=3',
             f'--workdir={tmp_path / "work_stage1"}') == 0
  d = json.load(open(tmp_path / 'stage1.json'))['tasks']['SST-2']
  assert d['config']['kd_intermediate_steps'] == 3
  assert d['config']['kd_intermediate_lr'] == 5e-5
  assert 'kd_intermediate_lr' not in c['config']
  # (What stage 1 does to the encoder: test_stage_one_*, below.)
  # Provenance: the teacher (path and the sha256 of its files), the layers.
  from jaxdistil.glue import teacher_cache
  prov = json.load(open(tmp_path / 'stage1.json'))['provenance']
  assert prov['teacher']['fingerprint'] == teacher_cache.fingerprint_teacher(teacher)
  assert prov['teacher']['path'] == teacher and prov['teacher']['kd_online']
  assert prov['teacher']['kd_intermediate_steps'] == 3
  assert prov['transfer_set'] is None and prov['student_layers'] is None
  assert 0.0 <= a['teacher_check']['agreement'] <= 1.0
  assert a['teacher_check']['examples'] == 48
  # Bad input: one line each, exit 2, nothing written.
  bad = [
      (['--task=MRPC'], 'was fine-tuned on SST-2 (its config says so), not MRPC'),
      (['--task=STS-B'], 'was fine-tuned on SST-2 (its config says so), not STS-B'),
      (['--task=all'], '--teacher is fine-tuned on one task'),
      (['--kd_temperature=0'], '--kd_temperature=0.0: the temperature must be > 0'),
      (['--kd_alpha=1.5'], '--kd_alpha=1.5: must be in [0, 1]'),
      ([f'--teacher={tmp_path / "student"}'], 'has no classifier head'),
      (['--kd_intermediate_steps=2'], 'give --kd_online too'),
      ([f'--model={tmp_path / "student_3heads"}', '--kd_online',
        '--kd_intermediate_steps=2'], 'the student has 3 heads and the teacher 2'),
  ]
  from jaxdistil import convert
  c3 = bert.BertConfig(vocab_size=len(tok), hidden_size=24, num_layers=1,
                       num_heads=3, intermediate_size=48,
                       max_position_embeddings=64, type_vocab_size=0,
                       layout='distilbert')
  convert.save_model(str(tmp_path / 'student_3heads'), c3,
                     bert.init(c3, jax.random.key(0)), 'distilbert',
                     tokenizer_dir=VOCAB)
  for extra, want in bad:
    capsys.readouterr()
    args = ([f'--model={tmp_path / "student"}', f'--teacher={teacher}',
             '--task=SST-2', '--max_steps=2'] + common + extra)
    if any(e.startswith('--model=') for e in extra):
      args = args[1:]
    assert glue_cli.main(args) == 2, extra
    err = capsys.readouterr().err.strip()
    assert want in err and '\n' not in err, (extra, err)
  # A cache made by another teacher is refused, and left as it was.
  other = str(tmp_path / 'teacher2')
  assert glue_cli.main([f'--model={tmp_path / "t_base"}', '--task=SST-2',
                        '--max_steps=3', '--seed=5', f'--save={other}'] + common) == 0
  capsys.readouterr()
  assert glue_cli.main([f'--model={tmp_path / "student"}', f'--teacher={other}',
                        '--task=SST-2', '--max_steps=2', f'--workdir={work}']
                       + common) == 2
  assert 'computed by another teacher' in capsys.readouterr().err
  assert os.stat(os.path.join(cache, files[0])).st_mtime_ns == stamp


@needs_data
@pytest.mark.slow
def test_a_killed_distillation_resumes_and_saves_the_same_model(tok, tmp_path):
  import signal
  import subprocess
  import sys
  import time
  glue = str(tmp_path / 'glue')
  glue_subset(GLUE, glue, 'SST-2', 96, 16)
  common = ['--noprogress', '--max_len=32', '--batch_size=8', f'--data_dir={glue}',
            '--task=SST-2']
  teacher = teacher_and_student(tok, tmp_path, glue, 4, common)

  def command(work, save):
    return [sys.executable, '-m', 'jaxdistil.glue', f'--model={tmp_path / "student"}',
            f'--teacher={teacher}', '--seeds=2', '--max_steps=40',
            '--checkpoint_every=3', f'--workdir={work}', f'--save={save}'] + common

  env = dict(os.environ, JAX_PLATFORMS='cpu')
  whole = subprocess.run(command(tmp_path / 'w1', tmp_path / 's1'), env=env,
                         capture_output=True, text=True, timeout=600)
  assert whole.returncode == 0, whole.stderr[-2000:]
  # Killed (SIGKILL) once the second seed has a checkpoint: the first seed is
  # done, the second cut off mid-way.
  proc = subprocess.Popen(command(tmp_path / 'w2', tmp_path / 's2'), env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  ckpt = tmp_path / 'w2' / 'runs' / 'SST-2' / 'seed_1' / 'ckpt.npz'
  deadline = time.time() + 600
  while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert proc.poll() is None, 'the run ended before it could be killed'
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (tmp_path / 's2').exists()
  again = subprocess.run(command(tmp_path / 'w2', tmp_path / 's2'), env=env,
                         capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-2000:]
  a = (tmp_path / 's1' / 'model.safetensors').read_bytes()
  b = (tmp_path / 's2' / 'model.safetensors').read_bytes()
  assert a == b
  # A rerun of another command in the same folder is refused, in one line.
  other = subprocess.run(command(tmp_path / 'w2', tmp_path / 's3')
                         + ['--kd_alpha=0.3'], env=env, capture_output=True,
                         text=True, timeout=600)
  assert other.returncode == 2 and 'belongs to another run' in other.stderr
  assert other.stderr.strip().count('\n') == 0


def test_stage_one_moves_a_narrower_student_towards_its_teacher():
  """TinyBERT's stage 1 on a student half the teacher's width: the shared
  projection is wired in (it failed at trace time before), trained with the
  encoder, and the hidden-state and attention loss falls by over 30% from where it
  started; the head is untouched and the stage runs at its own rate."""
  import dataclasses
  from jaxdistil.glue import stage1 as stage1_lib
  t_cfg, t_params = tiny(120, layers=2, seed=3)
  t_cfg = t_cfg.replace(hidden_dropout=0.0, attention_dropout=0.0)
  s_cfg = t_cfg.replace(hidden_size=16, intermediate_size=32, num_layers=1)
  s_params = bert.init(s_cfg, jax.random.key(4))
  t_enc, t_rest, _ = heads.split_encoder_params(t_cfg, t_params)
  s_enc, s_rest, _ = heads.split_encoder_params(s_cfg, s_params)
  rest = dict(s_rest, teacher={'params': {'encoder': t_enc}, 'rest': t_rest})
  rng = np.random.default_rng(0)
  n, length = 16, 12
  arrays = {'input_ids': rng.integers(5, 120, (n, length)).astype(np.int32),
            'attention_mask': np.ones((n, length), np.int32),
            'token_type_ids': np.zeros((n, length), np.int32),
            'labels': np.zeros(n, np.int32)}
  arrays['attention_mask'][::3, 9:] = 0
  cfg = finetune.FinetuneConfig(batch_size=8, max_len=12, length_buckets=False,
                                kd_intermediate_steps=40,
                                kd_intermediate_lr=3e-3, warmup_fraction=0.0,
                                learning_rate=1e-9)
  mesh = finetune._mesh(cfg)
  template = {'encoder': s_enc, 'head': {}}
  stage1 = stage1_lib.compile_intermediate(s_cfg, t_cfg, cfg, template, rest, 40, mesh)
  assert set(stage1.params) == {'encoder', 'projection'}
  tree = jax.device_get(stage1_lib.intermediate_params(s_cfg, t_cfg, s_enc,
                                                       jax.random.key(5)))
  assert tree['projection']['kernel'].shape == (16, 32)
  batch = dict(arrays, weights=np.ones(n, np.float32))
  loss_of = lambda tr: float(stage1_lib.intermediate_loss(
      s_cfg, t_cfg, (0, 2), tr['encoder'], rest, batch, None, tr['projection']))
  before = loss_of(tree)

  class Bar:
    def update(self, _): pass
    def set_postfix(self, **_): pass
  on_device = jax.device_put(tree, stage1.params)
  trained, _ = finetune.fit(stage1, on_device, stage1.init_opt(on_device),
                            jax.device_put(rest, stage1.rest), arrays, cfg, 40,
                            jax.random.key(6), 0, mesh, Bar())
  after = loss_of(jax.device_get(trained))
  assert after < 0.7 * before, (before, after)
  # The stage's rate is its own: at the fine-tuning rate (1e-9) nothing moves.
  slow = stage1_lib.compile_intermediate(
      s_cfg, t_cfg, dataclasses.replace(cfg, kd_intermediate_lr=1e-9), template,
      rest, 40, mesh)
  on_device = jax.device_put(tree, slow.params)
  still, _ = finetune.fit(slow, on_device, slow.init_opt(on_device),
                          jax.device_put(rest, slow.rest), arrays, cfg, 40,
                          jax.random.key(6), 0, mesh, Bar())
  assert loss_of(jax.device_get(still)) == pytest.approx(before, rel=1e-3)


def test_the_intermediate_loss_is_zero_for_a_copy_of_the_teacher_only():
  from jaxdistil.glue import stage1
  t_cfg, t_params = tiny(120, layers=2, seed=3)
  t_cfg = t_cfg.replace(hidden_dropout=0.0, attention_dropout=0.0)
  encoder, rest, _ = heads.split_encoder_params(t_cfg, t_params)
  rest = dict(rest, teacher={'params': {'encoder': encoder}, 'rest': rest})
  rng = np.random.default_rng(0)
  ids = rng.integers(5, 120, size=(4, 9)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 6:] = 0
  batch = {'input_ids': ids, 'attention_mask': mask,
           'token_type_ids': np.zeros_like(ids),
           'weights': np.ones(4, np.float32)}
  same = stage1.intermediate_loss(t_cfg, t_cfg, (0, 1, 2), encoder, rest, batch, None)
  assert float(same) == pytest.approx(0.0, abs=1e-10)
  # A one-layer student drawn from teacher layer 1: its embeddings match
  # (0 <- 0) and its layer is the teacher's second, fed another input, so the
  # loss is the hidden and attention MSE of that one mismatch, > 0.
  s_cfg = t_cfg.replace(num_layers=1)
  s_enc = {'embeddings': encoder['embeddings'],
           'encoder': {'layer_0': encoder['encoder']['layer_1']}}
  other = stage1.intermediate_loss(s_cfg, t_cfg, (0, 2), s_enc, rest, batch, None)
  assert float(other) > 1e-7
  # Against NumPy: the hidden-state term alone, recomputed from the outputs.
  s_out = bert.apply(s_cfg, {**s_enc, **{k: v for k, v in rest.items()
                                         if k != 'teacher'}},
                     ids, mask, np.zeros_like(ids))
  t_out = bert.apply(t_cfg, {**encoder, **{k: v for k, v in rest.items()
                                           if k != 'teacher'}},
                     ids, mask, np.zeros_like(ids))
  m = mask.astype(np.float64)
  want_hidden = 0.0
  for i, j in ((0, 0), (1, 2)):
    sq = np.square(np.asarray(s_out.hidden_states[i], np.float64)
                   - np.asarray(t_out.hidden_states[j], np.float64)).mean(-1)
    want_hidden += (sq * m).sum() / m.sum()
  assert float(other) >= want_hidden - 1e-6        # plus the attention term
  from jaxdistil.glue import kd
  s_att = kd.attention_scores(s_cfg, s_enc, s_out.hidden_states[0], 0)
  t_att = kd.attention_scores(t_cfg, encoder, t_out.hidden_states[1], 1)
  pair = (m[:, :, None] * m[:, None, :])[:, None]
  sq = np.square(np.asarray(s_att, np.float64) - np.asarray(t_att, np.float64))
  want_att = (sq * pair).sum() / np.broadcast_to(pair, sq.shape).sum()
  assert float(other) == pytest.approx(want_hidden + want_att, rel=1e-5)


@needs_data
@pytest.mark.slow
def test_a_transfer_set_made_by_the_command_teaches_a_student(tok, tmp_path, capsys):
  transformers = pytest.importorskip('transformers')
  pytest.importorskip('torch')
  from jaxdistil import augment as augment_cli
  from jaxdistil.glue import augment
  glue = str(tmp_path / 'glue')
  glue_subset(GLUE, glue, 'SST-2', 24, 8)
  mlm = str(tmp_path / 'mlm')
  config = transformers.BertConfig(vocab_size=30522, hidden_size=32,
                                   num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=64)
  transformers.BertForMaskedLM(config).save_pretrained(mlm)
  transformers.BertTokenizer(os.path.join(VOCAB, 'vocab.txt')).save_pretrained(mlm)
  out = str(tmp_path / 'transfer')
  args = [f'--mlm={mlm}', '--task=SST-2', f'--data_dir={glue}', f'--output={out}',
          '--copies=2', '--max_len=32']
  assert augment_cli.main(args) == 0
  transfer = augment.read_transfer_set(out)
  assert 0 < len(transfer.examples) <= 48 and not transfer.label_weights.any()
  assert transfer.meta['task'] == 'SST-2' and transfer.meta['copies'] == 2
  # Called again: done already, the same folder and bytes.
  before = {f: open(os.path.join(out, f), 'rb').read() for f in os.listdir(out)}
  assert augment_cli.main(args) == 0
  assert before == {f: open(os.path.join(out, f), 'rb').read()
                    for f in os.listdir(out)}
  # A model without a trained MLM head is refused in one line.
  bare = str(tmp_path / 'bare')
  transformers.BertModel(config).save_pretrained(bare)
  transformers.BertTokenizer(os.path.join(VOCAB, 'vocab.txt')).save_pretrained(bare)
  capsys.readouterr()
  assert augment_cli.main([f'--mlm={bare}'] + args[1:3] +
                          [f'--output={tmp_path / "t2"}']) == 2
  err = capsys.readouterr().err.strip()
  assert 'no trained masked-LM head' in err and '\n' not in err
  # The teacher labels the transfer set; the student trains on both.
  common = ['--noprogress', '--max_len=32', '--batch_size=8', f'--data_dir={glue}',
            '--task=SST-2']
  teacher = teacher_and_student(tok, tmp_path, glue, 2, common)
  res = str(tmp_path / 'r.json')
  assert glue_cli.main([f'--model={tmp_path / "student"}', f'--teacher={teacher}',
                        f'--transfer_set={out}', '--epochs=1', f'--output={res}',
                        f'--workdir={tmp_path / "w"}'] + common) == 0
  summary = json.load(open(res))
  got = summary['tasks']['SST-2']
  assert got['num_train'] == 24 + len(transfer.examples)
  assert summary['provenance']['transfer_set']['task'] == 'SST-2'
  assert summary['provenance']['transfer_set']['source'] == transfer.meta['source']
  # The transfer rows are taught by the teacher's own logits on their texts:
  # the cached ones equal the teacher run directly on the transfer set.
  from jaxdistil.glue import teacher as glue_teacher
  from jaxdistil.glue import teacher_cache
  cached = teacher_cache.cache_path(str(tmp_path / 'w' / 'teacher_logits'),
                                    'SST-2', 'transfer')
  direct = glue_teacher.make_teacher(teacher, tasks.get('SST-2'), 32, None)(
      transfer.examples, 'transfer')
  np.testing.assert_allclose(np.load(cached)['logits'], direct, atol=1e-5)
  # A transfer set made from other rows (another --max_train_examples) or for
  # another task is refused in one line, before any training.
  other = str(tmp_path / 'transfer_12')
  assert augment_cli.main(args[:3] + [f'--output={other}', '--copies=2',
                                      '--max_len=32',
                                      '--max_train_examples=12']) == 0
  capsys.readouterr()
  assert glue_cli.main([f'--model={tmp_path / "student"}', f'--teacher={teacher}',
                        f'--transfer_set={other}', '--epochs=1'] + common) == 2
  err = capsys.readouterr().err.strip()
  assert 'other SST-2 training rows than these 24' in err and '\n' not in err


@needs_data
@pytest.mark.slow
def test_a_teacher_with_another_tokenizer_reads_the_raw_text_itself(tok, tmp_path):
  """A RoBERTa teacher (byte-level BPE) for a BERT-vocabulary student: the
  logits it gives for the training rows are `transformers`' own on the raw
  texts with the teacher's tokenizer (1e-4), not anything of the student's."""
  transformers = pytest.importorskip('transformers')
  torch = pytest.importorskip('torch')
  from helpers import bpe_tokenizer_dir
  from jaxdistil.glue import data as glue_data
  from jaxdistil.glue import teacher as glue_teacher
  glue = str(tmp_path / 'glue')
  glue_subset(GLUE, glue, 'MRPC', 12, 4)
  task = tasks.get('MRPC')
  train = glue_data.read_split(task, 'train', glue, 'tsv')
  path = str(tmp_path / 'roberta')
  bpe_tokenizer_dir(path, train.text_a + train.text_b, vocab_size=400)
  config = transformers.RobertaConfig(
      vocab_size=400, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
      intermediate_size=64, max_position_embeddings=80, type_vocab_size=1,
      pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=2,
      id2label={0: 'not_equivalent', 1: 'equivalent'},
      label2id={'not_equivalent': 0, 'equivalent': 1})
  torch.manual_seed(0)
  model = transformers.RobertaForSequenceClassification(config).eval()
  model.save_pretrained(path)
  teacher = glue_teacher.make_teacher(path, task, 64, None)
  ours = teacher(train, 'train')
  hf_tok = transformers.AutoTokenizer.from_pretrained(path)
  enc = hf_tok(train.text_a, train.text_b, truncation=True, max_length=64,
               padding=True, return_tensors='pt')
  with torch.no_grad():
    want = model(**enc).logits.numpy()
  np.testing.assert_allclose(ours, want, atol=1e-4, rtol=0)
  # ... and the student's vocabulary could not even express these ids.
  assert hf_tok.vocab_size != len(tok)
