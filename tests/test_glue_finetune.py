"""Fine-tuning: the heads and loss against NumPy, a tiny model that learns real
SST-2, an STS-B-layout regression end to end, and the command line."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistil.glue import __main__ as cli
from jaxdistil.glue import data, finetune, tasks
from jaxdistil.glue.tasks import GlueError
from jaxdistil.models import bert
from test_glue_data import mnli_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLUE = os.path.join(ROOT, '..', 'shared', 'data', 'glue')
VOCAB = os.path.join(ROOT, '..', 'shared', 'data', 'vocab')
needs_data = pytest.mark.skipif(
    not (os.path.isdir(GLUE) and os.path.isdir(VOCAB)), reason='no shared data')


@pytest.fixture(scope='module')
def tok():
  from jaxdistil.data import tokenizer
  return tokenizer.load(VOCAB)


def tiny_bert(vocab_size, type_vocab_size=2, seed=0, num_layers=2):
  cfg = bert.BertConfig(vocab_size=vocab_size, hidden_size=32, num_layers=num_layers,
                        num_heads=2, intermediate_size=64,
                        max_position_embeddings=64,
                        type_vocab_size=type_vocab_size)
  return cfg, bert.init(cfg, jax.random.key(seed))


def test_distilbert_and_bert_heads_match_numpy():
  cfg, _ = tiny_bert(100)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((5, 32)).astype(np.float32)
  head = jax.device_get(finetune.init_head(cfg, 3, jax.random.key(1)))
  assert set(head) == {'pre_classifier', 'classifier'}
  assert head['classifier']['kernel'].shape == (32, 3)
  pre = np.maximum(x @ head['pre_classifier']['kernel'] + head['pre_classifier']['bias'], 0)
  want = pre @ head['classifier']['kernel'] + head['classifier']['bias']
  np.testing.assert_allclose(finetune.head_apply(head, x, 0.1), want, rtol=1e-5,
                             atol=1e-6)
  pooler = {'dense': {'kernel': rng.standard_normal((32, 32)).astype(np.float32),
                      'bias': rng.standard_normal(32).astype(np.float32)}}
  head = jax.device_get(finetune.init_head(cfg, 1, jax.random.key(1), pooler))
  assert set(head) == {'pooler', 'classifier'}
  np.testing.assert_array_equal(head['pooler']['dense']['kernel'],
                                pooler['dense']['kernel'])
  pooled = np.tanh(x @ pooler['dense']['kernel'] + pooler['dense']['bias'])
  want = pooled @ head['classifier']['kernel'] + head['classifier']['bias']
  np.testing.assert_allclose(finetune.head_apply(head, x, 0.1), want, rtol=1e-5,
                             atol=1e-6)
  # dropout is on only with a key: kept units are scaled by 1/(1-rate)
  dropped = np.asarray(finetune._dropout(jnp.ones((200, 32)), 0.25, jax.random.key(0)))
  assert set(np.unique(dropped)) == {0.0, np.float32(1 / 0.75)}
  assert abs((dropped == 0).mean() - 0.25) < 0.03


def test_encoder_params_split_keeps_the_pooler_for_the_head():
  cfg, params = tiny_bert(100)
  pooler = {'dense': {'kernel': np.zeros((32, 32), np.float32),
                      'bias': np.zeros(32, np.float32)}}
  encoder, rest, got = finetune.split_encoder_params(cfg, {**params, 'pooler': pooler})
  assert set(encoder) == {'embeddings', 'encoder'} and set(rest) == {'cls'}
  assert got is pooler
  # A checkpoint without the MLM head still runs (zeros of the right shapes).
  _, rest, got = finetune.split_encoder_params(
      cfg, {k: v for k, v in params.items() if k != 'cls'})
  assert got is None
  assert jax.tree.map(np.shape, rest['cls']) == jax.tree.map(np.shape, params['cls'])


def test_loss_is_the_mean_over_real_rows_only():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((4, 3)).astype(np.float32)
  labels = np.array([0, 2, 1, 1])
  weights = np.array([1, 1, 1, 0], np.float32)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  want = -np.mean(logp[np.arange(3), labels[:3]])
  assert float(finetune.loss_fn(logits, labels, weights, False)) == pytest.approx(want, rel=1e-6)
  scores = np.array([1.0, 2.0, 3.0, 100.0], np.float32)
  want = np.mean((logits[:3, 0] - scores[:3]) ** 2)
  assert float(finetune.loss_fn(logits, scores, weights, True)) == pytest.approx(want, rel=1e-6)


def test_train_indexes_cover_each_epoch_once_with_a_short_last_batch():
  steps = list(finetune.train_indexes(10, 4, 6, seed=0))
  assert [len(s) for s in steps] == [4, 4, 2, 4, 4, 2]
  assert sorted(np.concatenate(steps[:3])) == list(range(10))
  assert sorted(np.concatenate(steps[3:])) == list(range(10))
  assert not np.array_equal(np.concatenate(steps[:3]), np.concatenate(steps[3:]))
  assert finetune.total_steps(10, finetune.FinetuneConfig(batch_size=4, epochs=3)) == 9
  assert finetune.total_steps(10, finetune.FinetuneConfig(max_steps=5)) == 5


@needs_data
def test_tiny_model_learns_sst2_beyond_the_majority_class(tok):
  cfg, params = tiny_bert(len(tok), type_vocab_size=0)   # DistilBERT layout
  assert len(jax.devices()) == 8                         # data-parallel over 8
  result = finetune.run_task('SST-2', GLUE, cfg, params, tok, max_len=32,
                             max_steps=150, lr=2e-3, batch_size=32,
                             max_train_examples=4800, progress=False)
  dev = data.read_tsv(tasks.get('SST-2'), GLUE, 'dev').labels
  majority = max(np.mean(dev == 0), np.mean(dev == 1))
  acc = result['metrics']['accuracy']
  assert result['num_dev'] == {'dev': len(dev)} and result['num_train'] == 4800
  assert acc > majority + 0.1, (acc, majority)
  assert result['score'] == pytest.approx(100 * acc)
  assert result['per_seed'][0]['steps'] == 150


def write_stsb(folder, n_train, n_dev, seed=0):
  """STS-B's layout (10 columns, header) with a learnable score: how many
  times 'sun' appears in sentence1 (0 to 5)."""
  rng = np.random.default_rng(seed)
  words = 'cat dog man woman car road tree house river city'.split()
  head = ('index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t'
          'sentence1\tsentence2\tscore')
  for split, n in (('train', n_train), ('dev', n_dev)):
    rows = [head]
    for i in range(n):
      k = int(rng.integers(0, 6))
      a = list(rng.choice(words, 5 - k)) + ['sun'] * k
      rng.shuffle(a)
      rows.append('\t'.join([str(i), 'main-captions', 'MSRvid', '2012test',
                             f'{i:04d}', 'none', 'none', ' '.join(a) + '.',
                             ' '.join(rng.choice(words, 4)) + '.', f'{k:.3f}']))
    path = os.path.join(folder, 'STS-B', f'{split}.tsv')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
      f.write('\n'.join(rows) + '\n')


@needs_data
def test_stsb_layout_regression_end_to_end_reports_pearson_and_spearman(tok, tmp_path):
  write_stsb(str(tmp_path), 320, 64)
  cfg, params = tiny_bert(len(tok))
  result = finetune.run_task('STS-B', str(tmp_path), cfg, params, tok, seeds=2,
                             max_len=16, max_steps=60, lr=3e-3, batch_size=32,
                             progress=False)
  assert set(result['metrics']) == {'pearson', 'spearman'}
  assert result['num_dev'] == {'dev': 64} and result['num_train'] == 320
  assert [r['seed'] for r in result['per_seed']] == [0, 1]
  assert all(r['steps'] == 60 for r in result['per_seed'])
  for key in ('pearson', 'spearman'):
    values = [r['metrics'][key] for r in result['per_seed']]
    assert result['metrics'][key] == pytest.approx(np.median(values))
    assert all(0.5 < v <= 1 for v in values), values    # the count is learnt
  assert result['score'] == pytest.approx(np.median(
      [100 * np.mean(list(r['metrics'].values())) for r in result['per_seed']]))
  assert result['per_seed'][0]['metrics'] != result['per_seed'][1]['metrics']


@needs_data
def test_command_line_runs_every_present_task_and_writes_json_and_table(
    tok, tmp_path, capsys):
  glue = tmp_path / 'glue'
  write_stsb(str(glue), 64, 40)
  rows, _ = mnli_lines(48)          # MNLI: two dev sets, m and mm
  for name in ('train.tsv', 'dev_matched.tsv', 'dev_mismatched.tsv'):
    (glue / 'MNLI').mkdir(exist_ok=True)
    (glue / 'MNLI' / name).write_text('\n'.join(rows) + '\n')
  cfg, params = tiny_bert(len(tok), num_layers=1)
  out = str(tmp_path / 'out' / 'tiny.json')
  code = cli.main(['--model=/models/tiny', '--task=all', f'--data_dir={glue}',
                   '--max_steps=3', '--max_len=16', '--batch_size=16',
                   '--no_progress', f'--output={out}'],
                  load_model=lambda path: (cfg, params, tok))
  assert code == 0
  summary = json.load(open(out))
  assert sorted(summary['tasks']) == ['MNLI', 'STS-B']
  assert summary['tasks_missing'] == ['CoLA', 'MRPC', 'QNLI', 'QQP', 'RTE',
                                      'SST-2', 'WNLI']
  mnli = summary['tasks']['MNLI']
  assert set(mnli['metrics']) == {'accuracy_m', 'accuracy_mm'}
  assert mnli['num_dev'] == {'dev_matched': 48, 'dev_mismatched': 48}
  assert mnli['score'] == pytest.approx(50 * (mnli['metrics']['accuracy_m'] +
                                              mnli['metrics']['accuracy_mm']))
  assert summary['score'] == pytest.approx(np.mean(
      [summary['tasks'][t]['score'] for t in ('MNLI', 'STS-B')]))
  table = open(out[:-5] + '.md').read()
  assert table.strip() in capsys.readouterr().out
  row = [c.strip() for c in table.splitlines()[2].strip('|').split('|')]
  assert row[0] == 'tiny' and row[1].endswith('*')
  assert row[2:].count('-') == 7


def test_command_line_errors_are_one_line(tmp_path, capsys):
  def never(path):
    raise AssertionError('the model must not be loaded before the data is checked')
  assert cli.main(['--model=m', '--task=SQuAD', f'--data_dir={tmp_path}'],
                  load_model=never) == 2
  assert cli.main(['--model=m', '--task=RTE', f'--data_dir={tmp_path}'],
                  load_model=never) == 2
  assert cli.main(['--model=m', '--task=all', f'--data_dir={tmp_path}'],
                  load_model=never) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 3 and all(l.startswith('jaxdistil.glue: ') for l in err)
  assert 'valid tasks are CoLA' in err[0]
  assert 'RTE/{train.tsv, dev.tsv}' in err[1]
  assert 'no GLUE task found' in err[2]


@needs_data
def test_batch_size_must_divide_over_the_data_parallel_devices(tok, tmp_path):
  write_stsb(str(tmp_path), 8, 8)
  cfg, params = tiny_bert(len(tok))
  with pytest.raises(GlueError, match='batch_size=12 must be a multiple of the 8'):
    finetune.run_task('STS-B', str(tmp_path), cfg, params, tok, batch_size=12,
                      max_len=16, max_steps=1, progress=False)


@needs_data
def test_a_loaded_checkpoint_is_unpacked_with_its_pooler_and_tokenizer():
  from types import SimpleNamespace
  cfg, params = tiny_bert(30522)
  pooler = {'dense': {'kernel': np.eye(32, dtype=np.float32),
                      'bias': np.zeros(32, np.float32)}}
  loaded = SimpleNamespace(config=cfg, params=params, pooler=pooler,
                           tokenizer_dir=VOCAB, layout='bert')
  got_cfg, got_params, got_tok = cli.unpack_loaded(loaded)
  assert got_cfg is cfg and got_params['pooler'] is pooler
  assert set(got_params) == set(params) | {'pooler'} and 'pooler' not in params
  assert got_tok.cls_token_id == 101 and len(got_tok) == 30522
  loaded = SimpleNamespace(config=cfg, params=params, pooler=None, tokenizer_dir=None)
  assert cli.unpack_loaded(loaded)[1].keys() == params.keys()
  assert cli.unpack_loaded(loaded)[2] is None
  assert cli.unpack_loaded((cfg, params, None)) == (cfg, params, None)


@needs_data
def test_a_tokenizer_larger_than_the_model_vocabulary_is_one_line(tok, tmp_path):
  write_stsb(str(tmp_path), 8, 8)
  cfg, params = tiny_bert(1000)             # the tokenizer has 30,522 pieces
  with pytest.raises(GlueError, match='tokenizer and model do not match') as e:
    finetune.run_task('STS-B', str(tmp_path), cfg, params, tok, max_steps=1,
                      progress=False)
  assert '\n' not in str(e.value)
