"""Fine-tuning: the heads and loss against NumPy, length buckets (batch plans,
padding on real CoLA, bucketed predictions equal to full-length ones), a tiny
model that learns real SST-2, an STS-B-layout regression end to end, and the
command line."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistil import sharding
from jaxdistil.glue import heads
from jaxdistil.glue import __main__ as cli
from jaxdistil.glue import run as glue_run
from jaxdistil.glue import data, finetune, tasks
from jaxdistil.glue.tasks import GlueError
from jaxdistil.models import bert
from helpers import mnli_lines, write_stsb

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
  cfg, _ = tiny_bert(100, type_vocab_size=0)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((5, 32)).astype(np.float32)
  head = jax.device_get(heads.init_head(cfg, 3, jax.random.key(1)))
  assert set(head) == {'pre_classifier', 'classifier'}
  # BERT's layout (token types) without a pooler gets a fresh one, as
  # BertForSequenceClassification made from a BertForMaskedLM does.
  with_types, _ = tiny_bert(100)
  assert set(heads.init_head(with_types, 3, jax.random.key(1))) == {
      'pooler', 'classifier'}
  assert head['classifier']['kernel'].shape == (32, 3)
  pre = np.maximum(x @ head['pre_classifier']['kernel'] + head['pre_classifier']['bias'], 0)
  want = pre @ head['classifier']['kernel'] + head['classifier']['bias']
  np.testing.assert_allclose(heads.head_apply(head, x, 0.1), want, rtol=1e-5,
                             atol=1e-6)
  pooler = {'dense': {'kernel': rng.standard_normal((32, 32)).astype(np.float32),
                      'bias': rng.standard_normal(32).astype(np.float32)}}
  head = jax.device_get(heads.init_head(cfg, 1, jax.random.key(1), pooler))
  assert set(head) == {'pooler', 'classifier'}
  np.testing.assert_array_equal(head['pooler']['dense']['kernel'],
                                pooler['dense']['kernel'])
  pooled = np.tanh(x @ pooler['dense']['kernel'] + pooler['dense']['bias'])
  want = pooled @ head['classifier']['kernel'] + head['classifier']['bias']
  np.testing.assert_allclose(heads.head_apply(head, x, 0.1), want, rtol=1e-5,
                             atol=1e-6)
  # dropout is on only with a key: kept units are scaled by 1/(1-rate)
  dropped = np.asarray(heads._dropout(jnp.ones((200, 32)), 0.25, jax.random.key(0)))
  assert set(np.unique(dropped)) == {0.0, np.float32(1 / 0.75)}
  assert abs((dropped == 0).mean() - 0.25) < 0.03


def test_encoder_params_split_keeps_the_pooler_for_the_head():
  cfg, params = tiny_bert(100)
  pooler = {'dense': {'kernel': np.zeros((32, 32), np.float32),
                      'bias': np.zeros(32, np.float32)}}
  encoder, rest, got = heads.split_encoder_params(cfg, {**params, 'pooler': pooler})
  assert set(encoder) == {'embeddings', 'encoder'} and set(rest) == {'cls'}
  assert got is pooler
  # A checkpoint without the MLM head still runs (zeros of the right shapes).
  _, rest, got = heads.split_encoder_params(
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


# ----------------------------------------------------------------------------
# Length buckets

def mixed_lengths(n, max_len, seed=0):
  """Lengths as GLUE has them: mostly short, a few long, the extremes present."""
  rng = np.random.default_rng(seed)
  lengths = np.minimum(2 + rng.geometric(1 / 12, n), max_len)
  lengths[:2] = (2, max_len)
  return lengths


def encoded_like(lengths, max_len, vocab_size, seed=0):
  """`data.encode`-shaped arrays (pairs: types 1 after a split) of these lengths."""
  rng = np.random.default_rng(seed)
  n = len(lengths)
  col = np.arange(max_len)[None]
  mask = (col < lengths[:, None]).astype(np.int32)
  ids = np.where(mask, rng.integers(200, vocab_size, (n, max_len)), 0)
  ids[:, 0] = 101
  split = np.maximum(lengths // 2, 1)[:, None]
  return {'input_ids': ids.astype(np.int32), 'attention_mask': mask,
          'token_type_ids': ((col >= split) & (mask > 0)).astype(np.int32),
          'labels': rng.integers(0, 2, n).astype(np.int32)}


def test_bucket_lengths_are_few_ascending_and_end_at_max_len():
  assert finetune.bucket_lengths(128) == (8, 12, 16, 24, 32, 48, 64, 96, 128)
  assert finetune.bucket_lengths(100) == (8, 12, 16, 24, 32, 48, 64, 96, 100)
  assert finetune.bucket_lengths(6) == (6,)
  assert len(finetune.bucket_lengths(512)) == 13     # ~2 log2(max_len / 8)
  assert finetune.bucket_lengths(128, False) == (128,)
  assert finetune.bucket_lengths(128, (64, 32, 32)) == (32, 64, 128)
  with pytest.raises(GlueError, match=r'length 256 is not in 1..max_len=128; '
                     r'drop it or raise max_len'):
    finetune.bucket_lengths(128, (64, 256))
  with pytest.raises(GlueError, match='give True, False or a list of lengths'):
    finetune.bucket_lengths(128, ('a',))
  np.testing.assert_array_equal(
      finetune.bucket_of([1, 8, 9, 12, 13, 127, 128], (8, 12, 16, 128)),
      [8, 8, 12, 12, 16, 128, 128])


def plan_of(lengths, batch_size, steps, seed, buckets):
  return list(finetune.train_plan(lengths, batch_size, steps, seed, buckets))


def test_an_epoch_covers_every_example_once_each_in_its_smallest_bucket():
  lengths = mixed_lengths(1000, 128)
  cfg = finetune.FinetuneConfig(batch_size=32, epochs=2)
  buckets = finetune.bucket_lengths(128)
  per_epoch = finetune.steps_per_epoch(lengths, 32, buckets)
  # One short batch per bucket at most: a few more steps than ceil(n / 32).
  assert 32 <= per_epoch < 32 + len(buckets)
  assert finetune.total_steps(lengths, cfg) == 2 * per_epoch
  plan = plan_of(lengths, 32, 2 * per_epoch, 0, buckets)
  assert len(plan) == 2 * per_epoch
  for epoch in (plan[:per_epoch], plan[per_epoch:]):
    rows = np.concatenate([b.index for b in epoch])
    assert sorted(rows) == list(range(1000))
    for b in epoch:
      assert 1 <= len(b.index) <= 32
      np.testing.assert_array_equal(finetune.bucket_of(lengths[b.index], buckets),
                                    b.length)
    # one short batch per bucket in use, and the batches of buckets interleave
    assert sum(len(b.index) < 32 for b in epoch) <= len(buckets)
    assert [b.length for b in epoch] != sorted(b.length for b in epoch)
  same = plan_of(lengths, 32, 2 * per_epoch, 0, buckets)
  other = plan_of(lengths, 32, 2 * per_epoch, 1, buckets)
  flat = lambda p: (np.concatenate([b.index for b in p]), [b.length for b in p])
  assert all(np.array_equal(a, b) for a, b in zip(flat(plan), flat(same)))
  assert not np.array_equal(flat(plan)[0], flat(other)[0])
  assert not np.array_equal(flat(plan[:per_epoch])[0], flat(plan[per_epoch:])[0])
  # A partial last epoch runs its first batches; max_steps is what is run.
  assert len(plan_of(lengths, 32, per_epoch + 3, 0, buckets)) == per_epoch + 3
  # One bucket (length_buckets=False) is the fixed-length order of before.
  off = plan_of(lengths, 32, 70, 0, (128,))
  assert {b.length for b in off} == {128}
  assert all(np.array_equal(b.index, i) for b, i in
             zip(off, finetune.train_indexes(1000, 32, 70, seed=0)))
  cfg_off = finetune.FinetuneConfig(batch_size=32, epochs=2, length_buckets=False)
  assert finetune.total_steps(lengths, cfg_off) == 2 * 32


def test_eval_plan_sorts_by_length_and_keeps_the_short_batch_shortest():
  lengths = mixed_lengths(203, 64, seed=3)
  buckets = finetune.bucket_lengths(64)
  plan = finetune.eval_plan(lengths, 16, buckets)
  assert sorted(np.concatenate([b.index for b in plan])) == list(range(203))
  assert [len(b.index) for b in plan] == [203 % 16] + [16] * (203 // 16)
  longest = [int(lengths[b.index].max()) for b in plan]
  assert longest == sorted(longest)
  assert all(b.length == finetune.bucket_of(m, buckets) for b, m in zip(plan, longest))
  off = finetune.eval_plan(lengths, 16, (64,))
  assert [list(b.index) for b in off] == [list(range(s, min(s + 16, 203)))
                                         for s in range(0, 203, 16)]


@needs_data
def test_length_buckets_cut_cola_padding_from_about_nine_tenths(tok):
  task = tasks.get('CoLA')
  lengths = data.lengths(data.encode(data.read_tsv(task, GLUE, 'train'), tok, 128))
  assert len(lengths) == 8551
  fraction = {}
  for on in (False, True):
    cfg = finetune.FinetuneConfig(length_buckets=on)      # batch 32, 3 epochs
    buckets = finetune.bucket_lengths(cfg.max_len, on)
    plan = plan_of(lengths, 32, finetune.total_steps(lengths, cfg), 0, buckets)
    fraction[on] = finetune.padding_fraction(lengths, plan, 32)
    assert len({b.length for b in plan}) <= len(buckets)  # one compile each
  assert fraction[False] > 0.88
  assert fraction[True] < 0.2, fraction
  # Dev, sorted into batches of 128: the one short batch is the costly part.
  dev = {'dev': data.encode(data.read_tsv(task, GLUE, 'dev'), tok, 128)}
  assert finetune.eval_padding_fraction(dev, 128, (128,)) > 0.88
  assert finetune.eval_padding_fraction(dev, 128, finetune.bucket_lengths(128)) < 0.4


class Bar:
  def update(self, n):
    pass

  def set_postfix(self, **kw):
    pass


@pytest.mark.parametrize('on', [True, False])
def test_train_runs_the_plan_with_one_batch_shape_per_bucket(on):
  """A recording stand-in for the jitted step: what `train` feeds it."""
  lengths = mixed_lengths(150, 64, seed=1)
  arrays = encoded_like(lengths, 64, 1000)
  cfg = finetune.FinetuneConfig(batch_size=16, max_len=64, epochs=1,
                                length_buckets=on)
  mesh = finetune._mesh(cfg)
  fed = []

  def step(params, opt_state, rest, batch, key, step):
    fed.append({k: np.asarray(v) for k, v in batch.items()})
    return params, opt_state, jnp.zeros(())

  compiled = finetune.Compiled(step, None, None, None, None)
  steps = finetune.total_steps(lengths, cfg)
  finetune.fit(compiled, {}, {}, {}, arrays, cfg, steps, None, 0, mesh, Bar())
  buckets = finetune.bucket_lengths(64, on)
  plan = plan_of(lengths, 16, steps, 0, buckets)
  assert len(fed) == len(plan) == steps
  shapes = {b['input_ids'].shape for b in fed}
  assert shapes <= {(16, L) for L in buckets} and len(shapes) <= len(buckets)
  assert (len(shapes) > 2) == on
  assert sum(b['weights'].sum() for b in fed) == 150     # each example once
  for b, p in zip(fed, plan):
    real = len(p.index)
    np.testing.assert_array_equal(b['input_ids'][:real],
                                  arrays['input_ids'][p.index, :p.length])
    np.testing.assert_array_equal(b['labels'][:real], arrays['labels'][p.index])
    assert b['weights'][:real].all() and not b['weights'][real:].any()


def random_params(shapes, seed=0):
  """NumPy params of these shapes at unit gain (kernels N(0, 1/fan_in),
  LayerNorm scales 1): logits O(1) that depend on every real token, and no
  time spent compiling `bert.init`."""
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    if jax.tree_util.keystr(path).endswith("['scale']"):
      return np.ones(s.shape, np.float32)
    std = 0.1 if len(s.shape) == 1 else 1 / np.sqrt(np.prod(s.shape[:-1]))
    return (std * rng.standard_normal(s.shape)).astype(np.float32)
  return jax.tree_util.tree_map_with_path(leaf, shapes)


def test_bucketed_predictions_equal_full_length_ones_in_order():
  cfg = bert.BertConfig(vocab_size=2000, hidden_size=32, num_layers=1,
                        num_heads=2, intermediate_size=64,
                        max_position_embeddings=64)
  params = random_params(jax.eval_shape(lambda: bert.init(cfg, jax.random.key(0))))
  encoder, rest, _ = heads.split_encoder_params(cfg, params)
  head = random_params(jax.eval_shape(
      lambda: heads.init_head(cfg, 3, jax.random.key(0))), seed=1)
  model = {'encoder': encoder, 'head': head}
  lengths = mixed_lengths(75, 32, seed=2)
  arrays = encoded_like(lengths, 32, 2000)
  mesh = finetune._mesh(finetune.FinetuneConfig())
  predict = jax.jit(functools.partial(finetune.predict_step, cfg))
  buckets = finetune.bucket_lengths(32)
  with sharding.constraints(mesh):
    full = finetune.predict_logits(predict, model, rest, arrays, 16, mesh)
    compiles = predict._cache_size()
    bucketed = finetune.predict_logits(predict, model, rest, arrays, 16, mesh,
                                       buckets)
  assert compiles == 1
  used = {b.length for b in finetune.eval_plan(lengths, 16, buckets)}
  # one compile per bucket used (32, the full length, among them)
  assert len(used) > 2 and 32 in used and predict._cache_size() == len(used)
  assert full.shape == bucketed.shape == (75, 3)
  assert np.abs(bucketed - full).max() < 1e-5
  with sharding.constraints(mesh):
    # the order is the rows' own: row 1 alone (in copies) gives its logits
    one = sharding.global_batch(finetune._batch(arrays, np.array([1]), 16), mesh)
    alone = np.asarray(predict(model, rest, one))[0]
    # 1e-5 is a real test: unmasked padding, or another row, moves logits more
    leaky = finetune.predict_logits(
        predict, model, rest, {**arrays, 'attention_mask': np.ones_like(
            arrays['attention_mask'])}, 16, mesh)
  np.testing.assert_allclose(bucketed[1], alone, atol=1e-5)
  assert np.abs(leaky - full).max() > 0.01
  assert np.abs(full[1:] - full[:-1]).max() > 0.01


@needs_data
@pytest.mark.slow
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


@needs_data
@pytest.mark.slow
def test_stsb_layout_regression_end_to_end_reports_pearson_and_spearman(tok, tmp_path):
  write_stsb(str(tmp_path), 320, 64)
  # A student's layout (no token types: DistilBERT's pre_classifier head). A
  # BERT layout without a pooler gets a fresh tanh pooler instead, which at
  # this test's high learning rate learns the count on one seed of two.
  cfg, params = tiny_bert(len(tok), type_vocab_size=0)
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
@pytest.mark.slow
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
                   '--noprogress', f'--output={out}'],
                  load_model=lambda path: (cfg, params, tok))
  assert code == 0
  summary = json.load(open(out))
  assert sorted(summary['tasks']) == ['MNLI', 'STS-B']
  assert summary['tasks_missing'] == ['CoLA', 'MRPC', 'QNLI', 'QQP', 'RTE',
                                      'SST-2', 'WNLI']
  mnli = summary['tasks']['MNLI']
  assert mnli['buckets'] == [8, 12, 16] and mnli['config']['length_buckets']
  assert set(mnli['padding_fraction']) == {'train', 'eval'}
  assert all(0 <= v < 1 for v in mnli['padding_fraction'].values())
  assert mnli['per_seed'][0]['padding_fraction'] == mnli['padding_fraction']
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


@pytest.mark.parametrize('flag,want', [([], True), (['--nolength_buckets'], False), (['--no_length_buckets'], False)])
def test_command_line_passes_length_buckets_and_prints_the_padding(
    tmp_path, capsys, monkeypatch, flag, want):
  write_stsb(str(tmp_path), 4, 4)
  seen = {}

  def run_task(task, data_dir, bert_cfg, params, tokenizer, **kw):
    seen.update(kw)
    return {'score': 50.0, 'metrics': {'pearson': 0.5, 'spearman': 0.5},
            'padding_fraction': {'train': 0.151, 'eval': 0.374}}

  monkeypatch.setattr(finetune, 'run_task', run_task)
  assert cli.main(['--model=m', '--task=STS-B', f'--data_dir={tmp_path}',
                   '--noprogress'] + flag,
                  load_model=lambda path: (None, {}, object())) == 0
  assert seen['length_buckets'] is want
  assert '(padding: 15% of train tokens, 37% of dev)' in capsys.readouterr().err


@needs_data
def test_batch_size_must_divide_over_the_data_parallel_devices(tok, tmp_path):
  write_stsb(str(tmp_path), 8, 8)
  cfg, params = tiny_bert(len(tok))
  with pytest.raises(GlueError, match='batch_size=12 must be a multiple of the 8'):
    finetune.run_task('STS-B', str(tmp_path), cfg, params, tok, batch_size=12,
                      max_len=16, max_steps=1, progress=False)


@needs_data
def test_a_loaded_checkpoint_gives_its_pooler_and_tokenizer(tmp_path):
  from jaxdistil import convert
  cfg, params = tiny_bert(30522)
  pooler = {'dense': {'kernel': np.eye(32, dtype=np.float32),
                      'bias': np.zeros(32, np.float32)}}
  convert.save_model(str(tmp_path / 'm'), cfg, params, 'bert', pooler=pooler,
                     tokenizer_dir=VOCAB)
  loaded, tok = glue_run.load(str(tmp_path / 'm'))
  got = loaded.params_with_pooler()
  np.testing.assert_array_equal(got['pooler']['dense']['kernel'], np.eye(32))
  assert set(got) == set(params) | {'pooler'}
  assert tok.cls_token_id == 101 and len(tok) == 30522
  convert.save_model(str(tmp_path / 'bare'), cfg, params, 'bert')
  with pytest.raises(GlueError, match='no tokenizer files.*--tokenizer=DIR'):
    glue_run.load(str(tmp_path / 'bare'))
  assert len(glue_run.load(str(tmp_path / 'bare'), VOCAB)[1]) == 30522


@needs_data
def test_a_tokenizer_larger_than_the_model_vocabulary_is_one_line(tok, tmp_path):
  write_stsb(str(tmp_path), 8, 8)
  cfg, params = tiny_bert(1000)             # the tokenizer has 30,522 pieces
  with pytest.raises(GlueError, match='tokenizer and model do not match') as e:
    finetune.run_task('STS-B', str(tmp_path), cfg, params, tok, max_steps=1,
                      progress=False)
  assert '\n' not in str(e.value)


@needs_data
def test_more_seeds_top_up_a_stored_result_as_if_run_at_once(tok, tmp_path):
  # A top-up keeps the stored seeds and runs the rest on the same training
  # subset (drawn by the first seed), so it equals running them all at once.
  write_stsb(str(tmp_path), 96, 32)
  cfg, params = tiny_bert(len(tok))
  run = functools.partial(finetune.run_task, 'STS-B', str(tmp_path), cfg, params,
                          tok, max_len=16, max_steps=4, lr=3e-3, batch_size=16,
                          max_train_examples=64, progress=False)
  at_once = json.loads(json.dumps(run(seeds=2)))     # as stored on disk
  one = json.loads(json.dumps(run(seeds=1)))
  assert one['per_seed'] == at_once['per_seed'][:1]
  topped = run(seeds=2, previous=one)
  assert [r['seed'] for r in topped['per_seed']] == [0, 1]
  assert topped['per_seed'][0] is one['per_seed'][0]        # kept, not rerun
  np.testing.assert_allclose(topped['per_seed'][1]['score'],
                             at_once['per_seed'][1]['score'], rtol=1e-6)
  assert topped['score'] == pytest.approx(at_once['score'], rel=1e-6)
  assert topped['num_train'] == 64 and topped['config'] == at_once['config']
  assert run(seeds=2, previous=at_once)['per_seed'] == at_once['per_seed']  # nothing to do

  # What cannot be topped up is refused in one line naming the difference.
  with pytest.raises(GlueError, match=r"learning_rate 0.003 -> 0.001\); top them up "
                                      r"with the same settings") as e:
    finetune.run_task('STS-B', str(tmp_path), cfg, params, tok, max_len=16,
                      max_steps=4, lr=1e-3, batch_size=16, max_train_examples=64,
                      seeds=2, progress=False, previous=one)
  assert '\n' not in str(e.value)
  with pytest.raises(GlueError, match="is for 'STS-B', not MRPC"):
    finetune.run_task('MRPC', str(tmp_path), cfg, params, tok, previous=one,
                      progress=False)
  with pytest.raises(GlueError, match=r'stored seeds are \[0\], not 5, 6'):
    run(seeds=2, seed=5, previous=one)
