"""Hugging Face conversion against `transformers` in PyTorch (float32, CPU).

Every model here is a real on-disk checkpoint written by `save_pretrained` (or a
variant of one rewritten with safetensors, for the key spellings found in the
wild), with every parameter random so that no mapping error hides behind a
default. The independent reference for the names is the hand-written table in
tests/helpers/parity.py; the reference for the numbers is `transformers` itself.
Tolerance: 1e-5 max abs on logits and every hidden state at real positions.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from safetensors.numpy import load_file, save_file  # noqa: E402

from helpers import parity as ref  # noqa: E402
from jaxdistil import convert  # noqa: E402
from jaxdistil.convert import ConvertError  # noqa: E402
from jaxdistil.models import bert  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB_FILE_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + [
    f'w{i}' for i in range(ref.VOCAB - 5)]


def hf_bert_config(**kw):
  base = dict(vocab_size=ref.VOCAB, hidden_size=ref.HIDDEN,
              num_hidden_layers=ref.LAYERS, num_attention_heads=ref.HEADS,
              intermediate_size=ref.MLP, max_position_embeddings=ref.MAX_POS,
              type_vocab_size=2, hidden_act='gelu', layer_norm_eps=1e-12,
              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  base.update(kw)
  return transformers.BertConfig(**base)


def save_hf(model, directory, seed, **save_kw):
  ref.randomize_(model, seed)
  model.eval()
  model.save_pretrained(directory, **save_kw)
  with open(os.path.join(directory, 'vocab.txt'), 'w') as f:
    f.write('\n'.join(VOCAB_FILE_TOKENS) + '\n')
  return model


def flat(params):
  return {'/'.join(str(k.key) for k in p): np.asarray(x)
          for p, x in jax.tree_util.tree_leaves_with_path(params)}


def assert_params_equal(a, b):
  fa, fb = flat(a), flat(b)
  assert sorted(fa) == sorted(fb)
  for k in fa:
    np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


@pytest.fixture(scope='module')
def bert_mlm(tmp_path_factory):
  d = str(tmp_path_factory.mktemp('hf') / 'bert_mlm')
  model = save_hf(transformers.BertForMaskedLM(hf_bert_config()), d, seed=0)
  return d, model


# ---------------------------------------------------------------------------
# Import: parity and key variants.

def test_import_bert_for_masked_lm_matches_transformers(bert_mlm):
  d, model = bert_mlm
  m = convert.import_hf(d)
  assert m.layout == 'bert' and m.pooler is None
  assert m.config == ref.our_config(2)
  # The names agree with the parity test's hand-written table, bit for bit.
  assert_params_equal(m.params, ref.params_from_bert(ref.state_numpy(model)))
  ids, mask, types = ref.make_inputs(seed=1, with_types=True)
  ours = ref.run_ours(m.config, m.params, ids, mask, types)
  ref.compare(ours, ref.run_theirs(model, 'eager', ids, mask, types), mask, 'import')


def _rewrite(src, dst, rename=None, extra=None, drop=()):
  """A copy of checkpoint `src` with keys renamed/added/dropped (real variants)."""
  os.makedirs(dst)
  tensors = load_file(os.path.join(src, 'model.safetensors'))
  out = {}
  for k, v in tensors.items():
    if k in drop:
      continue
    out[rename(k) if rename else k] = v
  out.update(extra or {})
  save_file(out, os.path.join(dst, 'model.safetensors'), metadata={'format': 'pt'})
  for f in ('config.json', 'vocab.txt'):
    with open(os.path.join(src, f)) as a, open(os.path.join(dst, f), 'w') as b:
      b.write(a.read())
  return dst


def test_key_variants_import_to_the_same_params(bert_mlm, tmp_path):
  d, model = bert_mlm
  base = convert.import_hf(d).params
  sd = ref.state_numpy(model)
  legacy = lambda k: (k.replace('LayerNorm.weight', 'LayerNorm.gamma')
                      .replace('LayerNorm.bias', 'LayerNorm.beta'))
  variants = {
      'no_prefix': _rewrite(d, str(tmp_path / 'a'),
                            rename=lambda k: k[len('bert.'):]
                            if k.startswith('bert.') else k),
      'gamma_beta': _rewrite(d, str(tmp_path / 'b'), rename=legacy),
      'buffers_and_tied_copies': _rewrite(d, str(tmp_path / 'c'), extra={
          'bert.embeddings.position_ids': np.arange(ref.MAX_POS)[None],
          'cls.predictions.decoder.weight': sd['cls.predictions.decoder.weight'],
          'cls.predictions.decoder.bias': sd['cls.predictions.decoder.bias']}),
      'bias_only_as_decoder_bias': _rewrite(
          d, str(tmp_path / 'd'), drop=('cls.predictions.bias',),
          extra={'cls.predictions.decoder.bias': sd['cls.predictions.bias']}),
  }
  for name, path in variants.items():
    assert_params_equal(convert.import_hf(path).params, base), name


def test_pretraining_checkpoint_drops_nsp_and_keeps_pooler(tmp_path):
  d = str(tmp_path / 'pt')
  model = save_hf(transformers.BertForPreTraining(hf_bert_config()), d, seed=4)
  m = convert.import_hf(d)
  sd = ref.state_numpy(model)
  assert_params_equal(m.params, ref.params_from_bert(sd))
  np.testing.assert_array_equal(m.pooler['dense']['kernel'],
                                sd['bert.pooler.dense.weight'].T)
  np.testing.assert_array_equal(m.pooler['dense']['bias'], sd['bert.pooler.dense.bias'])


def test_untied_decoder_matches_and_round_trips(tmp_path):
  d = str(tmp_path / 'untied')
  model = save_hf(transformers.BertForMaskedLM(
      hf_bert_config(tie_word_embeddings=False)), d, seed=5)
  sd = ref.state_numpy(model)
  assert not np.array_equal(sd['cls.predictions.decoder.weight'],
                            sd['bert.embeddings.word_embeddings.weight'])
  m = convert.import_hf(d)
  assert not m.config.tie_word_embeddings
  np.testing.assert_array_equal(m.params['cls']['predictions']['decoder']['kernel'],
                                sd['cls.predictions.decoder.weight'].T)
  ids, mask, types = ref.make_inputs(seed=6, with_types=True)
  ours = ref.run_ours(m.config, m.params, ids, mask, types)
  ref.compare(ours, ref.run_theirs(model, 'eager', ids, mask, types), mask, 'untied')
  out = str(tmp_path / 'back')
  convert.export(m.config, m.params, out, layout='bert', tokenizer_dir=d)
  # Untied, transformers v5 keeps `cls.predictions.bias` apart from the decoder's
  # bias and never uses it (v4 and real checkpoints hold the two equal); the
  # export writes the used one under both names.
  assert_same_tensors(d, out, skip=('cls.predictions.bias',))
  back = load_file(os.path.join(out, 'model.safetensors'))
  np.testing.assert_array_equal(back['cls.predictions.bias'],
                                sd['cls.predictions.decoder.bias'])


def test_tanh_gelu_teacher_matches(tmp_path):
  d = str(tmp_path / 'gelu_new')
  model = save_hf(transformers.BertForMaskedLM(hf_bert_config(hidden_act='gelu_new')),
                  d, seed=7)
  m = convert.import_hf(d)
  assert m.config.hidden_act == 'gelu_new'
  ids, mask, types = ref.make_inputs(seed=8, with_types=True)
  ours = ref.run_ours(m.config, m.params, ids, mask, types)
  ref.compare(ours, ref.run_theirs(model, 'eager', ids, mask, types), mask, 'gelu_new')


def test_sharded_bin_and_bf16_checkpoints(bert_mlm, tmp_path):
  d, model = bert_mlm
  base = convert.import_hf(d).params
  sharded = str(tmp_path / 'sharded')
  model.save_pretrained(sharded, max_shard_size='20KB')
  assert os.path.isfile(os.path.join(sharded, 'model.safetensors.index.json'))
  assert len([f for f in os.listdir(sharded) if f.endswith('.safetensors')]) > 2
  assert_params_equal(convert.import_hf(sharded).params, base)

  binary = str(tmp_path / 'bin')
  os.makedirs(binary)
  torch.save(model.state_dict(), os.path.join(binary, 'pytorch_model.bin'))
  model.config.to_json_file(os.path.join(binary, 'config.json'))
  assert_params_equal(convert.import_hf(binary).params, base)

  half = str(tmp_path / 'bf16')
  os.makedirs(half)
  import safetensors.torch
  sd16 = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()
          if k != 'cls.predictions.decoder.weight' and k != 'cls.predictions.decoder.bias'}
  safetensors.torch.save_file(sd16, os.path.join(half, 'model.safetensors'),
                              metadata={'format': 'pt'})
  model.config.to_json_file(os.path.join(half, 'config.json'))
  want = ref.params_from_bert({k: v.float().numpy() for k, v in sd16.items()})
  assert_params_equal(convert.import_hf(half).params, want)


def test_bare_encoder_needs_init_missing_head(tmp_path, capsys):
  d = str(tmp_path / 'bare')
  model = save_hf(transformers.BertModel(hf_bert_config()), d, seed=9)
  with pytest.raises(ConvertError, match='--init_missing_head'):
    convert.import_hf(d)
  m = convert.import_hf(d, init_missing_head=True)
  assert 'no masked-LM head' in capsys.readouterr().err
  assert m.pooler is not None
  # The encoder is the checkpoint's: every hidden state matches BertModel's.
  ids, mask, types = ref.make_inputs(seed=10, with_types=True)
  ours = ref.run_ours(m.config, m.params, ids, mask, types)
  theirs = ref.run_theirs(model, 'eager', ids, mask, types)
  real = mask.astype(bool)
  for a, b in zip(ours.hidden_states, theirs.hidden_states):
    assert np.abs(np.asarray(a) - b.numpy())[real].max() <= 1e-5
  # ... and the fresh head is BERT's init: LayerNorm ones, biases zero.
  head = m.params['cls']['predictions']
  np.testing.assert_array_equal(head['transform']['LayerNorm']['scale'], 1.0)
  np.testing.assert_array_equal(head['bias'], 0.0)


# ---------------------------------------------------------------------------
# Export and round trips.

def assert_same_tensors(a, b, skip=()):
  """Two HF directories hold the same tensors, bit for bit, under the same names."""
  ta = load_file(os.path.join(a, 'model.safetensors'))
  tb = load_file(os.path.join(b, 'model.safetensors'))
  assert sorted(ta) == sorted(tb)
  for k in ta:
    if k in skip:
      continue
    assert ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape, k
    assert ta[k].tobytes() == tb[k].tobytes(), k


@pytest.mark.smoke
def test_hf_to_ours_to_hf_is_bit_for_bit(bert_mlm, tmp_path):
  d, _ = bert_mlm
  m = convert.import_hf(d)
  out = str(tmp_path / 'back')
  assert convert.export(m.config, m.params, out, tokenizer_dir=d) == 'bert'
  assert_same_tensors(d, out)
  assert os.path.isfile(os.path.join(out, 'vocab.txt'))
  again = transformers.AutoModelForMaskedLM.from_pretrained(out)
  assert type(again).__name__ == 'BertForMaskedLM'


def test_distilbert_round_trip(tmp_path):
  d = str(tmp_path / 'distil')
  save_hf(transformers.DistilBertForMaskedLM(transformers.DistilBertConfig(
      vocab_size=ref.VOCAB, dim=ref.HIDDEN, n_layers=ref.LAYERS, n_heads=ref.HEADS,
      hidden_dim=ref.MLP, max_position_embeddings=ref.MAX_POS)), d, seed=11)
  m = convert.import_hf(d)
  assert m.layout == 'distilbert' and m.config.type_vocab_size == 0
  out = str(tmp_path / 'back')
  assert convert.export(m.config, m.params, out) == 'distilbert'
  assert_same_tensors(d, out)


def random_student(seed=12):
  cfg = ref.our_config(type_vocab_size=0)
  params = bert.init(cfg, jax.random.key(seed))
  # BERT's init leaves LayerNorms at 1/0 and biases at 0: randomise all of them.
  leaves, tree = jax.tree.flatten(params)
  rng = np.random.default_rng(seed)
  leaves = [np.asarray(x) + rng.normal(0, 0.1, x.shape).astype(np.float32)
            for x in leaves]
  return cfg, jax.tree.unflatten(tree, leaves)


@pytest.mark.parametrize('layout', ['distilbert', 'bert'])
def test_exported_student_loads_in_transformers(tmp_path, layout, bert_mlm):
  cfg, params = random_student()
  out = str(tmp_path / 'student')
  convert.export(cfg, params, out, layout=layout, tokenizer_dir=bert_mlm[0])
  model = transformers.AutoModelForMaskedLM.from_pretrained(out)
  model.eval()
  want = {'distilbert': 'DistilBertForMaskedLM', 'bert': 'BertForMaskedLM'}[layout]
  assert type(model).__name__ == want
  with open(os.path.join(out, 'config.json')) as f:
    assert json.load(f)['architectures'] == [want]
  ids, mask, _ = ref.make_inputs(seed=13, with_types=False)
  ours = ref.run_ours(cfg, params, ids, mask, np.zeros_like(ids))
  with torch.no_grad():
    theirs = model(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
  err = np.abs(np.asarray(ours.logits) - theirs.logits.numpy())[mask.astype(bool)]
  print(f'exported {layout}: max abs logits error {err.max():.2e}')
  assert err.max() <= 1e-5
  assert np.abs(np.asarray(ours.logits)).max() > 1.0
  tok = transformers.AutoTokenizer.from_pretrained(out)
  assert tok.convert_tokens_to_ids('[MASK]') == 4


def test_model_dir_round_trip_and_load_model(bert_mlm, tmp_path):
  d, _ = bert_mlm
  m = convert.import_hf(d)
  out = str(tmp_path / 'model')
  convert.save_model(out, m.config, m.params, m.layout, source=d, tokenizer_dir=d)
  loaded = convert.load_model(out)
  assert loaded.kind == 'model_dir' and loaded.config == m.config
  assert_params_equal(loaded.params, m.params)
  assert loaded.tokenizer_dir == out
  hf = convert.load_model(d)
  assert hf.kind == 'hf' and hf.tokenizer_dir == d
  with pytest.raises(ConvertError, match='already exists'):
    convert.save_model(out, m.config, m.params, m.layout)


# ---------------------------------------------------------------------------
# Bad input: one line, nothing half-loaded, nothing overwritten.

def _bad(tmp_path, name, config=None, tensors=None):
  d = tmp_path / name
  d.mkdir()
  if config is not None:
    (d / 'config.json').write_text(json.dumps(config))
  if tensors is not None:
    save_file(tensors, str(d / 'model.safetensors'), metadata={'format': 'pt'})
  return str(d)


def test_bad_inputs_get_one_line(bert_mlm, tmp_path, monkeypatch):
  d, model = bert_mlm
  good = load_file(os.path.join(d, 'model.safetensors'))
  with open(os.path.join(d, 'config.json')) as f:
    config = json.load(f)
  cases = {
      'no config.json': (_bad(tmp_path, 'a', tensors=good), 'no config.json'),
      'no weights': (_bad(tmp_path, 'b', config=config), 'has no weights'),
      'electra': (_bad(tmp_path, 'c', config=dict(config, model_type='electra',
                                                  architectures=['ElectraForMaskedLM'])),
                  'ElectraForMaskedLM model (model_type=\'electra\'), ELECTRA'),
      'gpt2': (_bad(tmp_path, 'd', config={'model_type': 'gpt2', 'n_embd': 32}),
               'GPT-2 / DistilGPT2 (a causal decoder): not supported; supported '
               'are BERT, DistilBERT, multilingual BERT, RoBERTa and XLM-RoBERTa'),
      'deberta': (_bad(tmp_path, 'c2', config={'model_type': 'deberta-v2'}),
                  'DeBERTa-v2/v3'),
      'albert': (_bad(tmp_path, 'c3', config={'model_type': 'albert'}), 'ALBERT'),
      'shape': (_bad(tmp_path, 'e', config=dict(config, intermediate_size=48),
                     tensors=good), 'disagree with config.json'),
      'unexpected': (_bad(tmp_path, 'f', config=config,
                          tensors=dict(good, **{'bert.extra.weight': np.zeros(3)})),
                     'unexpected 1 tensor'),
      'missing': (_bad(tmp_path, 'g', config=config, tensors={
          k: v for k, v in good.items() if 'layer.1.output.dense' not in k}),
                  'missing 2 tensor'),
      'path': (str(tmp_path / 'nope'), 'does not exist'),
  }
  for name, (path, words) in cases.items():
    with pytest.raises(ConvertError) as e:
      convert.import_hf(path)
    msg = str(e.value)
    assert words in msg and '\n' not in msg, (name, msg)
  monkeypatch.setenv('HF_HUB_OFFLINE', '1')
  with pytest.raises(ConvertError, match='cannot reach the Hugging Face hub'):
    convert.import_hf('bert-base-uncased')


@pytest.mark.slow
def test_cli_import_export_and_errors(bert_mlm, tmp_path):
  d, _ = bert_mlm
  env = dict(os.environ, JAX_PLATFORMS='cpu', HF_HUB_OFFLINE='1')
  model = str(tmp_path / 'model')
  back = str(tmp_path / 'back')
  cmd = [sys.executable, '-m', 'jaxdistil.convert']
  r = subprocess.run(cmd + ['import', f'--hf={d}', f'--output={model}'],
                     capture_output=True, text=True, cwd=REPO, env=env)
  assert r.returncode == 0, r.stderr
  r = subprocess.run(cmd + ['export', f'--checkpoint={model}', f'--output={back}'],
                     capture_output=True, text=True, cwd=REPO, env=env)
  assert r.returncode == 0, r.stderr
  assert 'BertForMaskedLM' in r.stdout
  assert_same_tensors(d, back)
  # An existing output is refused and left as it was.
  before = {f: os.path.getmtime(os.path.join(back, f)) for f in os.listdir(back)}
  r = subprocess.run(cmd + ['export', f'--checkpoint={model}', f'--output={back}'],
                     capture_output=True, text=True, cwd=REPO, env=env)
  assert r.returncode == 2
  assert r.stderr.strip().count('\n') == 0 and 'already exists' in r.stderr
  assert before == {f: os.path.getmtime(os.path.join(back, f)) for f in os.listdir(back)}
  r = subprocess.run(cmd + ['import', '--hf=bert-base-uncased',
                            f'--output={tmp_path / "x"}'],
                     capture_output=True, text=True, cwd=REPO, env=env)
  assert r.returncode == 2 and 'cannot reach the Hugging Face hub' in r.stderr
  assert r.stderr.strip().count('\n') == 0
  assert not os.path.exists(tmp_path / 'x')


@pytest.mark.parametrize('layout', ['distilbert', 'bert', 'roberta'])
def test_written_config_is_what_transformers_would_write(tmp_path, layout):
  """config.json is written without `transformers` (whose import pulls in
  PyTorch); loaded back, it is the config `transformers` itself builds."""
  from jaxdistil.convert import hf_config as hf_config_lib
  from jaxdistil.convert.hf_out import hf_config
  cfg, _ = random_student()
  if layout == 'roberta':
    cfg = cfg.replace(family='roberta', pad_token_id=1, max_position_embeddings=66)
  out = tmp_path / 'config'
  out.mkdir()
  (out / 'config.json').write_text(json.dumps(hf_config(cfg, layout, 3)))
  fields = hf_config_lib.to_hf(cfg, layout, 3)
  theirs = transformers.AutoConfig.for_model(fields.pop('model_type'), **fields)
  ours = transformers.AutoConfig.from_pretrained(str(out))
  assert type(ours) is type(theirs)
  skip = {'transformers_version', '_name_or_path'}
  a = {k: v for k, v in ours.to_dict().items() if k not in skip}
  b = {k: v for k, v in theirs.to_dict().items() if k not in skip}
  assert a == b


def test_export_imports_neither_transformers_nor_torch(tmp_path):
  code = ('import sys, jax\n'
          'from jaxdistil import convert\n'
          'from jaxdistil.models import bert\n'
          'cfg = bert.BertConfig(vocab_size=40, hidden_size=16, num_layers=2, '
          'num_heads=2, intermediate_size=32, max_position_embeddings=16, '
          'type_vocab_size=0)\n'
          f'convert.export(cfg, bert.init(cfg, jax.random.key(0)), {str(tmp_path / "s")!r})\n'
          'print(sorted(m for m in ("torch", "transformers") if m in sys.modules))\n')
  r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                     timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.strip().splitlines()[-1] == '[]'
  assert json.loads((tmp_path / 's' / 'config.json').read_text())['n_layers'] == 2
