"""Beyond BERT, end to end: a RoBERTa teacher (byte-level BPE) and a
multilingual-BERT-shaped teacher (119,547 cased WordPiece pieces), each with
random weights and its own tokenizer, from `prepare` on real text through
`train` to the exported student.

Each student comes out in its family's Hugging Face layout, with the teacher's
tokenizer files beside it, and `transformers` computes the same logits as our
final params (1e-5, every position of padded rows).
"""

import json
import os

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from jaxdistil import train  # noqa: E402
from jaxdistil.data import corpus  # noqa: E402
from jaxdistil.data import tokenizer as tokenizer_lib  # noqa: E402
from jaxdistil.models import bert  # noqa: E402
from helpers import text_files, tiny_config  # noqa: E402

pytestmark = pytest.mark.slow          # whole trainings: the full suite only

MAX_LEN = 16


def roberta_teacher(directory, tokenizer_dir):
  tok = tokenizer_lib.load(tokenizer_dir)
  config = transformers.RobertaConfig(
      vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
      num_attention_heads=4, intermediate_size=64,
      max_position_embeddings=MAX_LEN + 2, type_vocab_size=1, pad_token_id=1,
      bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
  torch.manual_seed(0)
  transformers.RobertaForMaskedLM(config).save_pretrained(directory)
  tok.save_pretrained(directory)
  return 'RobertaForMaskedLM', 'roberta'


def mbert_teacher(directory, tokenizer_dir):
  tok = tokenizer_lib.load(tokenizer_dir)
  config = transformers.BertConfig(
      vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
      num_attention_heads=4, intermediate_size=64, max_position_embeddings=32)
  torch.manual_seed(0)
  transformers.BertForMaskedLM(config).save_pretrained(directory)
  tok.save_pretrained(directory)
  return 'DistilBertForMaskedLM', 'bert'


@pytest.mark.parametrize('family', ['roberta', 'mbert'])
def test_a_teacher_of_each_family_distils_and_its_student_exports(
    family, tmp_path, bpe_tokenizer, mbert_tokenizer):
  teacher = str(tmp_path / 'teacher')
  make, tokenizer_dir = ((roberta_teacher, bpe_tokenizer) if family == 'roberta'
                         else (mbert_teacher, mbert_tokenizer))
  architecture, model_family = make(teacher, tokenizer_dir)
  data = str(tmp_path / 'data')
  meta = corpus.prepare(text_files(), tokenizer=teacher, max_len=MAX_LEN,
                        output=data, shard_size=5000, progress_bar=False)
  vocab = meta['vocab_size']
  if family == 'mbert':
    assert vocab == 119_547 and meta['dtype'] == 'int32'
  else:
    assert meta['special_ids'] == {'pad': 1, 'unk': 3, 'cls': 0, 'sep': 2, 'mask': 4}

  c = tiny_config(**{'total_steps': 3, 'checkpoint_every': 3, 'eval_every': 3,
                     'eval_batches': 1, 'peak_flops_per_device': 1e10,
                     'max_len': MAX_LEN})
  c.teacher, c.data = teacher, data
  work = str(tmp_path / 'work')
  result = train.train(c, work)
  assert result['step'] == 3
  run = result['config'].model.teacher
  assert run.family == model_family and run.vocab_size == vocab
  with open(os.path.join(work, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  assert all(np.isfinite(r['loss']) for r in rows)

  hf = result['hf']
  model = transformers.AutoModelForMaskedLM.from_pretrained(
      hf, attn_implementation='eager').eval()
  assert type(model).__name__ == architecture
  # The teacher's tokenizer goes with the student, and loads as it did.
  assert (tokenizer_lib.vocab_hash(tokenizer_lib.load(hf))
          == tokenizer_lib.vocab_hash(tokenizer_lib.load(teacher)))
  with open(os.path.join(work, 'model.json')) as f:
    student_cfg = bert.BertConfig(**json.load(f)['student'])
  assert student_cfg.family == model_family
  params = jax.device_get(result['state'].params)
  rng = np.random.default_rng(0)
  pad = meta['special_ids']['pad']
  ids = rng.integers(5, vocab, size=(2, 12))
  mask = np.ones_like(ids)
  ids[1, 7:], mask[1, 7:] = pad, 0
  ours = bert.apply(student_cfg, params, ids, mask)
  with torch.no_grad():
    theirs = model(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
  err = np.abs(np.asarray(ours.logits) - theirs.logits.numpy())
  if model_family == 'bert':
    err = err[mask.astype(bool)]     # BERT's padding positions are its own
  assert err.max() <= 1e-5, err.max()
