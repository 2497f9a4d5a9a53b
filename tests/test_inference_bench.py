"""Classifier inference (`jaxdistil.inference`) and its benchmark command
(`python -m jaxdistil.bench --inference`), against transformers and NumPy."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistil import flops, inference, inference_bench
from jaxdistil.data import synthetic
from jaxdistil.glue import heads
from jaxdistil.models import bert

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = 'the a cat dog sat on mat sun big small red blue runs jumps'.split()


def tiny(**kw):
  return bert.BertConfig(**dict(dict(
      vocab_size=128, hidden_size=32, num_layers=2, num_heads=4,
      intermediate_size=64, max_position_embeddings=32), **kw))


@pytest.mark.parametrize('layout', ['bert', 'distilbert', 'none'])
def test_bucketed_outputs_equal_full_length_ones_in_order(layout):
  cfg = tiny(type_vocab_size=0 if layout == 'distilbert' else 2)
  params = bert.init(cfg, jax.random.key(0))
  pooler = ({'dense': {'kernel': 0.1 * jax.random.normal(jax.random.key(2),
                                                         (32, 32)),
                       'bias': jnp.zeros(32)}} if layout == 'bert' else None)
  head = (None if layout == 'none'
          else heads.init_head(cfg, 3, jax.random.key(1), pooler=pooler))
  arrays = synthetic.glue_like_pairs(11, cfg.vocab_size, 32, seed=1)
  cfg, params, head = inference.prepare(cfg, params, head, 'float32', 'xla')
  want = inference.predict(cfg, params, head, arrays, 11)    # all at 32
  for batch_size in (1, 4):
    got = inference.predict(cfg, params, head, arrays, batch_size,
                            inference.bucket_lengths(32))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
  assert want.shape == (11, 32 if layout == 'none' else 3)


@pytest.mark.parametrize('types', [2, 0])
def test_one_fused_qkv_projection_computes_the_three(types):
  cfg = tiny(type_vocab_size=types)
  params = bert.init(cfg, jax.random.key(0))
  params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(
      jax.random.key(3), x.shape), params)            # biases not zero
  head = jax.tree.map(lambda x: x + 0.5 * jax.random.normal(
      jax.random.key(4), x.shape), heads.init_head(cfg, 3, jax.random.key(1)))
  arrays = synthetic.glue_like_pairs(7, cfg.vocab_size, 32, seed=3)
  fused = inference.prepare(cfg, params, head, 'float32', 'xla')
  plain = inference.prepare(cfg, params, head, 'float32', 'xla', fuse_qkv=False)
  qkv = fused[1]['encoder']['layer_1']['attention']['self']
  assert set(qkv) == {'qkv'} and qkv['qkv']['kernel'].shape == (32, 3, 4, 8)
  assert 'query' in plain[1]['encoder']['layer_1']['attention']['self']
  np.testing.assert_array_equal(
      qkv['qkv']['bias'][2],
      params['encoder']['layer_1']['attention']['self']['value']['bias'])
  got = inference.predict(*fused, arrays, 4, inference.bucket_lengths(32))
  want = inference.predict(*plain, arrays, 4, inference.bucket_lengths(32))
  assert np.abs(want).max() > 0.1
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_plan_keeps_file_order_and_pads_each_batch_to_its_bucket():
  lengths = np.array([5, 30, 9, 9, 17, 3, 12])
  plan = inference.plan(lengths, 3, (8, 12, 16, 24, 32))
  assert [list(b.index) for b in plan] == [[0, 1, 2], [3, 4, 5], [6]]
  assert [b.length for b in plan] == [32, 24, 12]
  arrays = {'input_ids': np.arange(7 * 32).reshape(7, 32),
            'attention_mask': np.ones((7, 32), np.int32)}
  last = inference.host_batch(arrays, plan[2], 3)
  assert last['input_ids'].shape == (3, 12)
  np.testing.assert_array_equal(last['input_ids'], arrays['input_ids'][[6] * 3, :12])


def test_bfloat16_casts_matrices_only_and_stays_near_float32():
  cfg = tiny()
  params = bert.init(cfg, jax.random.key(0))
  head = heads.init_head(cfg, 2, jax.random.key(1))
  arrays = synthetic.glue_like_pairs(6, cfg.vocab_size, 32, seed=2)
  c16, p16, h16 = inference.prepare(cfg, params, head, 'bfloat16', 'xla')
  kernel = p16['encoder']['layer_0']['attention']['self']['qkv']['kernel']
  assert kernel.dtype == jnp.bfloat16 and c16.dtype == 'bfloat16'
  assert p16['embeddings']['LayerNorm']['scale'].dtype == jnp.float32
  c32, p32, h32 = inference.prepare(cfg, params, head, 'float32', 'xla')
  got = inference.predict(c16, p16, h16, arrays, 2, inference.bucket_lengths(32))
  want = inference.predict(c32, p32, h32, arrays, 2)
  np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max() + 1e-3)


def test_inference_flops_agree_with_xla_cost_analysis():
  """Encoder only, no MLM head: XLA counts every op, ours the matmuls."""
  cfg = tiny(vocab_size=256, hidden_size=256, intermediate_size=1024,
             max_position_embeddings=64)
  params = bert.init(cfg, jax.random.key(0))
  c, p, _ = inference.prepare(cfg, params, None, 'float32', 'xla')
  ids = jnp.ones((4, 64), jnp.int32)
  batch = {'input_ids': ids, 'attention_mask': jnp.ones_like(ids)}
  compiled = jax.jit(lambda p, b: inference.forward(c, p, None, b)).lower(
      p, batch).compile()
  cost = compiled.cost_analysis()
  xla = (cost[0] if isinstance(cost, list) else cost)['flops']
  ours = flops.inference(cfg, [64] * 4, None)
  assert ours == 4 * 64 * cfg.num_layers * flops.layer_forward(cfg, 64)
  assert ours <= xla <= 1.1 * ours, (ours, xla)
  d = cfg.hidden_size
  assert (flops.inference(cfg, [10, 20], 3) - flops.inference(cfg, [10, 20], None)
          == 2 * (2 * d * d + 2 * d * 3))


# ----------------------------------------------------------------------------
# Against transformers: a tiny *ForSequenceClassification, its encoder saved as
# a Hugging Face folder (with a tokenizer), its head copied into ours.

def _linear(module):
  return {'kernel': jnp.asarray(module.weight.detach().numpy().T),
          'bias': jnp.asarray(module.bias.detach().numpy())}


def hf_classifier(folder, layout):
  """(torch model, our head of its weights); the encoder saved in `folder`."""
  import torch
  import transformers
  os.makedirs(folder, exist_ok=True)
  vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + WORDS
  with open(os.path.join(folder, 'vocab.txt'), 'w') as f:
    f.write('\n'.join(vocab) + '\n')
  transformers.BertTokenizer(os.path.join(folder, 'vocab.txt')).save_pretrained(
      folder)
  torch.manual_seed(0)
  if layout == 'bert':
    model = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
        num_labels=3)).eval()
    model.bert.save_pretrained(folder)
    head = {'pooler': {'dense': _linear(model.bert.pooler.dense)},
            'classifier': _linear(model.classifier)}
  else:
    model = transformers.DistilBertForSequenceClassification(
        transformers.DistilBertConfig(
            vocab_size=len(vocab), dim=32, n_layers=2, n_heads=4, hidden_dim=64,
            max_position_embeddings=64, num_labels=3)).eval()
    model.distilbert.save_pretrained(folder)
    head = {'pre_classifier': _linear(model.pre_classifier),
            'classifier': _linear(model.classifier)}
  return model, head


@pytest.mark.parametrize('layout', ['bert', 'distilbert'])
def test_logits_and_parameter_counts_match_transformers(tmp_path, layout):
  import torch
  from jaxdistil import convert
  model, head = hf_classifier(str(tmp_path / 'hf'), layout)
  loaded = convert.load_model(str(tmp_path / 'hf'), init_missing_head=True)
  arrays = synthetic.glue_like_pairs(5, 19, 32, seed=3, first_word=5)
  arrays['input_ids'][arrays['input_ids'] == 101] = 2      # [CLS]
  arrays['input_ids'][arrays['input_ids'] == 102] = 3      # [SEP]
  if layout == 'distilbert':
    arrays.pop('token_type_ids')
  cfg, params, h = inference.prepare(loaded.config, loaded.params, head,
                                     'float32', 'xla')
  got = inference.predict(cfg, params, h, arrays, 2, inference.bucket_lengths(32))
  with torch.no_grad():
    want = model(**{k: torch.as_tensor(v, dtype=torch.long)
                    for k, v in arrays.items()}).logits.numpy()
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
  counts = inference_bench.param_counts(params, h)
  assert counts['total'] == sum(p.numel() for p in model.parameters())
  base = model.bert if layout == 'bert' else model.distilbert
  assert counts['embeddings'] == sum(p.numel() for p in base.embeddings.parameters())


# ----------------------------------------------------------------------------
# The command

def write_sst2(folder, n_dev=9):
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(folder, 'SST-2'), exist_ok=True)
  for split, n in (('train', 4), ('dev', n_dev)):
    rows = ['sentence\tlabel'] + [
        ' '.join(rng.choice(WORDS, int(rng.integers(2, 25)))) + f'\t{i % 2}'
        for i in range(n)]
    with open(os.path.join(folder, 'SST-2', f'{split}.tsv'), 'w') as f:
      f.write('\n'.join(rows) + '\n')


def bench_command(*flags):
  env = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', 'jaxdistil.bench', '--inference',
                         *flags], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)


@pytest.mark.slow
def test_command_writes_the_report_and_a_second_run_compiles_from_the_cache(
    tmp_path):
  hf_classifier(str(tmp_path / 'hf'), 'bert')
  write_sst2(str(tmp_path / 'glue'))
  flags = [f'--model={tmp_path}/hf', f'--data_dir={tmp_path}/glue',
           '--task=SST-2', '--batch_size=2', '--max_len=32',
           f'--compilation_cache={tmp_path}/xla', '--matmul_size=256']
  runs = []
  for k in range(2):
    out = bench_command(*flags, f'--output={tmp_path}/r{k}.json')
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'latency' in out.stdout and 'head: none' in out.stdout
    runs.append(json.loads((tmp_path / f'r{k}.json').read_text()))
  first, second = runs
  for key in ('latency_ms', 'examples_per_s', 'params', 'compile_s', 'mfu',
              'cpu'):
    assert key in first, key
  assert first['examples'] == 9 and first['batches'] == 5
  assert first['latency_ms']['p90'] >= first['latency_ms']['p50'] > 0
  assert first['head'] == 'none' and first['params']['head'] == 0
  assert first['cpu']['model_name']
  assert first['compilation_cache']['entries_written'] > 0
  assert second['compilation_cache']['entries_written'] == 0
  assert second['compilation_cache']['entries_before'] > 0
  assert second['compile_s'] < first['compile_s']


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
  write_sst2(str(tmp_path / 'glue'))
  write_sst2(str(tmp_path / 'empty'), n_dev=0)
  common = ['--compilation_cache=', '--max_len=32']
  cases = {
      'does not exist': [f'--model={tmp_path}/none', f'--data_dir={tmp_path}/glue',
                         '--task=SST-2'],
      'SQuAD': [f'--model={tmp_path}/none', f'--data_dir={tmp_path}/glue',
                '--task=SQuAD'],
      'not found': [f'--model={tmp_path}/none', f'--data_dir={tmp_path}/none',
                    '--task=SST-2'],
      'no examples': [f'--model={tmp_path}/none', f'--data_dir={tmp_path}/empty',
                      '--task=SST-2'],
      'required': ['--task=SST-2'],
  }
  for words, argv in cases.items():
    assert inference_bench.main(argv + common) == 2, words
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], (words, err)
