"""RoBERTa and XLM-RoBERTa teachers in, DistilRoBERTa students out.

Tiny `RobertaForMaskedLM` / `XLMRobertaForMaskedLM` models with every parameter
random (tests/helpers/parity.randomize_) are saved with `save_pretrained`,
imported by `convert.import_hf`, and run against `transformers` (PyTorch,
eager attention, float32):

- logits and every hidden state agree to 1e-5 (max abs error) at every
  position of padded rows, padding included: RoBERTa numbers real tokens from
  `pad_token_id + 1` and gives padding the position `pad_token_id`;
- on packed rows, each sequence's slice equals HF on that sequence alone
  (positions restart per sequence, offset as RoBERTa's);
- HF -> jaxdistil -> HF is bit for bit, and `transformers` loads the export
  with no missing or unexpected tensor;
- a student drawn from the teacher exports as `RobertaForMaskedLM` (one token
  type, written as zeros) and matches `transformers` the same way.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from safetensors.numpy import load_file  # noqa: E402

from jaxdistil import convert  # noqa: E402
from jaxdistil.convert import hf_config  # noqa: E402
from jaxdistil.models import bert, student_init  # noqa: E402
from helpers.parity import randomize_  # noqa: E402

VOCAB, HIDDEN, LAYERS, HEADS, MLP, MAX_POS = 61, 32, 4, 4, 64, 40
PAD = 1                                    # RoBERTa's <pad>; <s> 0, </s> 2
LENGTH = 14
LENGTHS = (LENGTH, 9, 12, 4)               # rows 1..3 end in padding
ATOL = 1e-5

FAMILIES = {
    'roberta': (transformers.RobertaConfig, transformers.RobertaForMaskedLM),
    'xlm-roberta': (transformers.XLMRobertaConfig,
                    transformers.XLMRobertaForMaskedLM),
}


def hf_model(family: str, seed: int = 0, layers: int = LAYERS):
  config_cls, model_cls = FAMILIES[family]
  config = config_cls(
      vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=layers,
      num_attention_heads=HEADS, intermediate_size=MLP,
      max_position_embeddings=MAX_POS, type_vocab_size=1, pad_token_id=PAD,
      bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5,
      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
      attn_implementation='eager')
  model = model_cls(config).eval()
  randomize_(model, seed)
  return model


@pytest.fixture(scope='module', params=[
    'roberta', pytest.param('xlm-roberta', marks=pytest.mark.slow)])
def saved(request, tmp_path_factory):
  family = request.param
  model = hf_model(family)
  d = str(tmp_path_factory.mktemp(family) / 'hf')
  model.save_pretrained(d)
  return family, d, model


def padded_rows(seed: int = 0):
  """Random ids (never <pad>) with trailing <pad>, each row `<s> ... </s>`."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, VOCAB, size=(len(LENGTHS), LENGTH))
  mask = np.zeros_like(ids)
  for r, n in enumerate(LENGTHS):
    ids[r, 0], ids[r, n - 1] = 0, 2
    ids[r, n:] = PAD
    mask[r, :n] = 1
  return ids.astype(np.int32), mask.astype(np.int32)


def theirs(model, ids, mask):
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                attention_mask=torch.tensor(mask, dtype=torch.long),
                output_hidden_states=True)
  return ([h.numpy() for h in out.hidden_states], out.logits.numpy())


def ours(cfg, params, ids, mask, **kw):
  out = bert.apply(cfg, params, jnp.asarray(ids), jnp.asarray(mask), **kw)
  return ([np.asarray(h) for h in out.hidden_states], np.asarray(out.logits))


def assert_close(mine, hf, where=np.s_[...], label=''):
  (h_ours, l_ours), (h_hf, l_hf) = mine, hf
  assert len(h_ours) == len(h_hf)
  for i, (a, b) in enumerate(zip(h_ours, h_hf)):
    err = np.abs(a[where] - b[where]).max()
    assert err < ATOL, f'{label} hidden state {i}: max abs error {err}'
  err = np.abs(l_ours[where] - l_hf[where]).max()
  assert err < ATOL, f'{label} logits: max abs error {err}'


def inference(cfg):
  return cfg.replace(hidden_dropout=0.0, attention_dropout=0.0)


# ----------------------------------------------------------------------------
# The teacher: import, parity, round trip

def test_import_reads_the_family_and_its_padding_offset(saved):
  family, d, _ = saved
  m = convert.import_hf(d)
  assert m.layout == family and m.config.family == family
  assert m.config.type_vocab_size == 1 and m.config.pad_token_id == PAD
  assert m.config.position_offset == PAD + 1 and m.config.layer_norm_eps == 1e-5
  assert 'lm_head' not in json.dumps(list(m.params))     # our names inside


def test_teacher_matches_transformers_on_padded_rows(saved):
  family, d, model = saved
  m = convert.import_hf(d)
  ids, mask = padded_rows()
  # Every position, padding included: its position is the padding index.
  assert_close(ours(inference(m.config), m.params, ids, mask),
               theirs(model, ids, mask), label=family)


def pack(lengths, seed=1):
  """Sequences `<s> ... </s>` of `lengths` packed into one row (+ padding)."""
  rng = np.random.default_rng(seed)
  seqs = []
  for n in lengths:
    s = rng.integers(3, VOCAB, size=n)
    s[0], s[-1] = 0, 2
    seqs.append(s.astype(np.int32))
  row = np.full(sum(lengths) + 3, PAD, np.int32)
  seg = np.zeros_like(row)
  start = 0
  for k, s in enumerate(seqs):
    row[start:start + len(s)] = s
    seg[start:start + len(s)] = k + 1
    start += len(s)
  return seqs, row[None], seg[None]


def check_packed(cfg, params, model):
  seqs, row, seg = pack((6, 11, 4))
  mine = ours(cfg, params, row, (seg > 0).astype(np.int32), segment_ids=jnp.asarray(seg))
  start = 0
  for k, s in enumerate(seqs):
    alone = theirs(model, s[None], np.ones((1, len(s)), np.int32))
    piece = ([h[:, start:start + len(s)] for h in mine[0]],
             mine[1][:, start:start + len(s)])
    assert_close(piece, alone, label=f'sequence {k}')
    start += len(s)


def test_teacher_matches_transformers_on_packed_rows(saved):
  family, d, model = saved
  m = convert.import_hf(d)
  check_packed(inference(m.config), m.params, model)


def test_round_trip_is_bit_for_bit(saved, tmp_path):
  family, d, _ = saved
  m = convert.import_hf(d)
  out = str(tmp_path / 'back')
  assert convert.export(m.config, m.params, out) == family
  before, after = load_file(os.path.join(d, 'model.safetensors')), load_file(
      os.path.join(out, 'model.safetensors'))
  assert sorted(before) == sorted(after)
  for k in before:
    np.testing.assert_array_equal(before[k], after[k], err_msg=k)
  with open(os.path.join(out, 'config.json')) as f:
    written = json.load(f)
  assert written['model_type'] == family and written['pad_token_id'] == PAD
  assert written['architectures'] == [hf_config.ARCHITECTURE[family]]
  _, info = FAMILIES[family][1].from_pretrained(out, output_loading_info=True)
  assert not any(info[k] for k in ('missing_keys', 'unexpected_keys',
                                   'mismatched_keys')), info


def test_an_untied_decoder_and_a_saved_decoder_bias_import(tmp_path):
  config_cls, model_cls = FAMILIES['roberta']
  model = hf_model('roberta')
  model.config.tie_word_embeddings = False
  untied = model_cls(model.config).eval()
  randomize_(untied, 3)
  d = str(tmp_path / 'untied')
  untied.save_pretrained(d)
  m = convert.import_hf(d)
  assert not m.config.tie_word_embeddings
  ids, mask = padded_rows(2)
  assert_close(ours(inference(m.config), m.params, ids, mask),
               theirs(untied, ids, mask), label='untied')


# ----------------------------------------------------------------------------
# The student: DistilRoBERTa

def student_of(m, layers=(0, 3)):
  cfg = student_init.student_config(m.config, len(layers))
  params = student_init.init_from_teacher(
      m.params, m.config, cfg, layer_map=layers, fold_token_type=True)
  return cfg, params


def test_a_student_exports_as_roberta_and_matches_transformers(saved, tmp_path):
  family, d, _ = saved
  m = convert.import_hf(d)
  cfg, params = student_of(m)
  assert cfg.family == family and cfg.type_vocab_size == 0
  assert cfg.layout == 'bert'           # DistilRoBERTa keeps BERT's dropout sites
  out = str(tmp_path / 'student')
  assert convert.export(cfg, params, out) == family
  model, info = FAMILIES[family][1].from_pretrained(
      out, output_loading_info=True, attn_implementation='eager')
  assert not any(info[k] for k in ('missing_keys', 'unexpected_keys'))
  model.eval()
  assert model.config.num_hidden_layers == 2 and model.config.type_vocab_size == 1
  sd = load_file(os.path.join(out, 'model.safetensors'))
  assert not sd['roberta.embeddings.token_type_embeddings.weight'].any()
  ids, mask = padded_rows(4)
  assert_close(ours(inference(cfg), params, ids, mask), theirs(model, ids, mask),
               label='student')
  check_packed(inference(cfg), params, model)
  # and it comes back as it went
  back = convert.import_hf(out)
  assert back.config.family == family and back.config.num_layers == 2


def test_a_roberta_model_is_not_written_in_a_bert_layout(saved, tmp_path):
  family, d, _ = saved
  m = convert.import_hf(d)
  cfg, params = student_of(m)
  for layout in ('distilbert', 'bert'):
    with pytest.raises(convert.ConvertError) as e:
      convert.export(cfg, params, str(tmp_path / layout), layout=layout)
    msg = str(e.value)
    assert f'--layout={family}' in msg and '\n' not in msg
    assert not os.path.exists(tmp_path / layout)
  bert_cfg = bert.BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=1,
                             num_heads=HEADS, intermediate_size=MLP,
                             max_position_embeddings=MAX_POS)
  with pytest.raises(convert.ConvertError, match='--layout=bert'):
    convert.export(bert_cfg, bert.init(bert_cfg, jax.random.key(0)),
                   str(tmp_path / 'r'), layout='roberta')


# ----------------------------------------------------------------------------
# GLUE: RoBERTa's pair encoding and classification head

def test_glue_pairs_are_encoded_as_robertas_tokenizer_does(bpe_tokenizer):
  from jaxdistil.data import tokenizer as tokenizer_lib
  from jaxdistil.glue import data as glue_data
  tok = tokenizer_lib.load(bpe_tokenizer)
  a = ['The cat sat on the mat.', 'A short one.']
  b = ['It was a sunny day, and nobody minded.', 'Another sentence here.']
  examples = glue_data.Examples(text_a=a, text_b=b, labels=np.array([0, 1]),
                                origin='test')
  enc = glue_data.encode(examples, tok, max_len=48, style='roberta')
  for i in range(2):
    want = tok(a[i], b[i])['input_ids']           # <s> a </s></s> b </s>
    n = len(want)
    assert enc['input_ids'][i, :n].tolist() == want
    assert (enc['input_ids'][i, n:] == PAD).all() and enc['attention_mask'][i].sum() == n
  assert not enc['token_type_ids'].any()          # RoBERTa has one token type
  single = glue_data.encode(glue_data.Examples(text_a=a, text_b=None,
                                               labels=np.array([0, 1]), origin='t'),
                            tok, max_len=48, style='roberta')
  assert single['input_ids'][0, :len(tok(a[0])['input_ids'])].tolist() == tok(a[0])['input_ids']


def test_the_classification_head_matches_roberta_for_sequence_classification(tmp_path):
  from jaxdistil.glue import finetune, heads
  mlm = hf_model('roberta')
  d = str(tmp_path / 'mlm')
  mlm.save_pretrained(d)
  m = convert.import_hf(d)
  config = mlm.config
  config.num_labels = 3
  clf = transformers.RobertaForSequenceClassification(config).eval()
  randomize_(clf, 5)
  clf.roberta.load_state_dict(mlm.roberta.state_dict(), strict=False)
  head = heads.init_head(m.config, 3, jax.random.key(0))
  assert set(head) == {'dense', 'out_proj'}
  sd = {k: v.detach().numpy() for k, v in clf.classifier.state_dict().items()}
  head = {name: {'kernel': sd[f'{name}.weight'].T, 'bias': sd[f'{name}.bias']}
          for name in ('dense', 'out_proj')}
  encoder, rest, pooler = heads.split_encoder_params(m.config, m.params)
  assert pooler is None
  ids, mask = padded_rows(6)
  batch = {'input_ids': jnp.asarray(ids), 'attention_mask': jnp.asarray(mask),
           'token_type_ids': jnp.zeros_like(jnp.asarray(ids))}
  logits = finetune.forward(inference(m.config), {'encoder': encoder, 'head': head},
                            rest, batch, head_dropout=0.1)
  with torch.no_grad():
    want = clf(input_ids=torch.tensor(ids, dtype=torch.long),
               attention_mask=torch.tensor(mask, dtype=torch.long)).logits.numpy()
  np.testing.assert_allclose(np.asarray(logits), want, atol=ATOL, rtol=0)
