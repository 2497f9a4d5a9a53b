"""Our params -> a Hugging Face directory that `transformers` loads unchanged.

A DistilBERT-layout model (no token types: every student) becomes
`DistilBertForMaskedLM`; a BERT-layout one (a teacher) `BertForMaskedLM`. A
student can also be written as `BertForMaskedLM` (layout='bert'): its missing
token-type table is written as zeros, which adds nothing.

The directory holds `config.json` (from `transformers`' own config classes, so
every field is one it expects), `model.safetensors` (float32, `format: pt`) and
the tokenizer files. It is written beside the target and renamed into place, so
a crash leaves either the old directory or the new one, never half of one.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import jax
import numpy as np

from jaxdistil.convert import names
from jaxdistil.convert.hf_files import TOKENIZER_FILES, ConvertError
from jaxdistil.models.bert import BertConfig


def hf_config(cfg: BertConfig, layout: str, pad_token_id: int = 0):
  import transformers   # config classes only: no torch needed
  if layout == 'distilbert':
    if cfg.type_vocab_size:
      raise ConvertError('a model with token-type embeddings cannot be written as '
                         'DistilBERT: export it with --layout=bert')
    if cfg.layer_norm_eps != 1e-12:
      raise ConvertError(f'layer_norm_eps={cfg.layer_norm_eps} but HF DistilBERT '
                         f'fixes it at 1e-12: export with --layout=bert')
    if cfg.hidden_act not in ('gelu', 'relu'):
      raise ConvertError(f'HF DistilBERT supports gelu and relu, not '
                         f'{cfg.hidden_act!r}: export with --layout=bert')
    return transformers.DistilBertConfig(
        vocab_size=cfg.vocab_size, dim=cfg.hidden_size, n_layers=cfg.num_layers,
        n_heads=cfg.num_heads, hidden_dim=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        sinusoidal_pos_embds=False, dropout=cfg.hidden_dropout,
        attention_dropout=cfg.attention_dropout, activation=cfg.hidden_act,
        initializer_range=cfg.initializer_range, pad_token_id=pad_token_id,
        tie_word_embeddings=cfg.tie_word_embeddings,
        architectures=['DistilBertForMaskedLM'])
  if layout == 'bert':
    return transformers.BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        type_vocab_size=cfg.type_vocab_size or 2, layer_norm_eps=cfg.layer_norm_eps,
        hidden_act=cfg.hidden_act, hidden_dropout_prob=cfg.hidden_dropout,
        attention_probs_dropout_prob=cfg.attention_dropout,
        initializer_range=cfg.initializer_range, pad_token_id=pad_token_id,
        tie_word_embeddings=cfg.tie_word_embeddings,
        architectures=['BertForMaskedLM'])
  raise ConvertError(f'unknown layout {layout!r}: use distilbert or bert')


def state_dict(cfg: BertConfig, params: dict, layout: str) -> dict[str, np.ndarray]:
  """Our params as a PyTorch-named dict of float32 numpy arrays."""
  flat = {tuple(str(k.key) for k in path): x for path, x in
          jax.tree_util.tree_leaves_with_path(params)}
  prefix = names.PREFIX[layout]
  if layout == 'bert' and not cfg.type_vocab_size:
    table_cfg = cfg.replace(type_vocab_size=2)
    flat[('embeddings', 'token_type_embeddings', 'embedding')] = np.zeros(
        (2, cfg.hidden_size), np.float32)
    cfg = table_cfg
  entries = names.entries(layout, cfg)
  want = {e.ours for e in entries}
  if set(flat) != want:
    missing = sorted('/'.join(p) for p in want - set(flat))
    extra = sorted('/'.join(p) for p in set(flat) - want)
    raise ConvertError(f'params do not match the model config: missing {missing[:4]}, '
                       f'unexpected {extra[:4]}')
  out = {}
  for e in entries:
    name = e.hf if e.head and e.hf.startswith(('cls.', 'vocab_')) else prefix + e.hf
    out[name] = names.to_hf(e, np.asarray(jax.device_get(flat[e.ours]), np.float32))
  if layout == 'bert' and not cfg.tie_word_embeddings:
    out['cls.predictions.decoder.bias'] = out['cls.predictions.bias'].copy()
  return out


def copy_tokenizer(tokenizer_dir: str | None, output: str) -> list[str]:
  if not tokenizer_dir:
    return []
  copied = []
  for f in TOKENIZER_FILES:
    src = os.path.join(tokenizer_dir, f)
    if os.path.isfile(src):
      shutil.copyfile(src, os.path.join(output, f))
      copied.append(f)
  return copied


def export(cfg: BertConfig, params: dict, output: str, layout: str | None = None,
           tokenizer_dir: str | None = None, overwrite: bool = False) -> str:
  """Write an HF directory at `output`; returns the layout written.

  An existing non-empty `output` is refused unless `overwrite` (then replaced
  whole, only after the new one is complete).
  """
  from safetensors.numpy import save_file
  layout = layout or ('distilbert' if not cfg.type_vocab_size else 'bert')
  output = os.path.abspath(output)
  if os.path.exists(output) and (not os.path.isdir(output) or os.listdir(output)):
    if not overwrite:
      raise ConvertError(f'{output} already exists and is not empty: choose a new '
                         f'--output (nothing was written)')
  pad_id = 0
  if tokenizer_dir:
    pad_id = _pad_id(tokenizer_dir)
  config = hf_config(cfg, layout, pad_id)
  tensors = state_dict(cfg, params, layout)
  parent = os.path.dirname(output)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.' + os.path.basename(output) + '.', dir=parent)
  try:
    config.save_pretrained(tmp)
    save_file(tensors, os.path.join(tmp, 'model.safetensors'),
              metadata={'format': 'pt'})
    copy_tokenizer(tokenizer_dir, tmp)
    if os.path.exists(output):
      old = output + '.old'
      shutil.rmtree(old, ignore_errors=True)
      os.replace(output, old)
      os.replace(tmp, output)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, output)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return layout


def _pad_id(tokenizer_dir: str) -> int:
  """[PAD]'s id from a vocab.txt (0 in BERT's), without loading a tokenizer."""
  vocab = os.path.join(tokenizer_dir, 'vocab.txt')
  if os.path.isfile(vocab):
    with open(vocab, encoding='utf-8') as f:
      for i, line in enumerate(f):
        if line.rstrip('\n') == '[PAD]':
          return i
  return 0
