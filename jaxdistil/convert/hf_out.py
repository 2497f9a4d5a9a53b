"""Our params -> a Hugging Face directory that `transformers` loads unchanged.

A DistilBERT-layout model (no token types: every student) becomes
`DistilBertForMaskedLM`; a BERT-layout one (a teacher) `BertForMaskedLM`. A
student can also be written as `BertForMaskedLM` (layout='bert'): its missing
token-type table is written as zeros, which adds nothing. A RoBERTa-family
model (teacher or student: `BertConfig.family`) becomes `RobertaForMaskedLM`
or `XLMRobertaForMaskedLM`, as `distilroberta-base` is laid out.

The directory holds `config.json` (from `transformers`' own config classes, so
every field is one it expects), `model.safetensors` (float32, `format: pt`) and
the tokenizer files. It is written beside the target and renamed into place, so
a crash leaves either the old directory or the new one, never half of one.
`export_student` writes a train workdir's student to WORKDIR/hf, a remote
workdir's through a local folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import jax
import numpy as np

from jaxdistil import fs
from jaxdistil import workdir as workdir_layout
from jaxdistil.convert import classifier as classifier_lib
from jaxdistil.convert import hf_config as hf_config_lib
from jaxdistil.convert import names
from jaxdistil.convert.hf_files import ConvertError
from jaxdistil.data.tokenizer import copy_tokenizer
from jaxdistil.models.config import BertConfig


def hf_config(cfg: BertConfig, layout: str, pad_token_id: int | None = None) -> dict:
  """The config.json `transformers` reads for `cfg` as `layout`.

  Every field that shapes the model is written explicitly (`hf_config.FIELDS`),
  so `from_pretrained` fills nothing that matters from its defaults. Written
  without importing `transformers`, which would import PyTorch where it is
  installed: exporting needs neither.
  """
  return dict(sorted(hf_config_lib.to_hf(cfg, layout, pad_token_id).items()))


def state_dict(cfg: BertConfig, params: dict, layout: str,
               mlm_head: bool = True) -> dict[str, np.ndarray]:
  """Our params as a PyTorch-named dict of float32 numpy arrays; without
  the masked-LM head when `mlm_head` is False (a classifier's encoder)."""
  if not mlm_head:
    params = {k: v for k, v in params.items() if k != 'cls'}
  flat = {tuple(str(k.key) for k in path): x for path, x in
          jax.tree_util.tree_leaves_with_path(params)}
  prefix = names.PREFIX[layout]
  types = hf_config_lib.TOKEN_TYPES.get(layout)
  if types and not cfg.type_vocab_size:     # a student: a table of zeros
    flat[('embeddings', 'token_type_embeddings', 'embedding')] = np.zeros(
        (types, cfg.hidden_size), np.float32)
    cfg = cfg.replace(type_vocab_size=types)
  entries = [e for e in names.entries(layout, cfg) if mlm_head or not e.head]
  want = {e.ours for e in entries}
  if set(flat) != want:
    missing = sorted('/'.join(p) for p in want - set(flat))
    extra = sorted('/'.join(p) for p in set(flat) - want)
    raise ConvertError(f'params do not match the model config: missing {missing[:4]}, '
                       f'unexpected {extra[:4]}')
  out = {}
  for e in entries:
    name = e.hf if e.head and e.hf.startswith(names.HEAD_ROOTS) else prefix + e.hf
    out[name] = names.to_hf(e, np.asarray(jax.device_get(flat[e.ours]), np.float32))
  if mlm_head and layout == 'bert' and not cfg.tie_word_embeddings:
    out['cls.predictions.decoder.bias'] = out['cls.predictions.bias'].copy()
  return out


def model_config(cfg: BertConfig, layout: str | None,
                 tokenizer_dir: str | None, head: dict | None = None,
                 classifier=None) -> tuple[str, dict]:
  """(layout, config.json) of `cfg` written as `layout` (None: the default
  for the model and head), a classifier's with its labels when `head` is
  given. The config is what an ONNX export carries too."""
  if layout is None and head is not None and cfg.family == 'bert':
    layout = names.head_layout(head)     # BERT's pooler head, or DistilBERT's
  layout = layout or hf_config_lib.default_layout(cfg)
  # BERT-family students made from a config carry no padding id of their own:
  # take their tokenizer's. RoBERTa's is part of the model (its positions).
  pad_id = (_pad_id(tokenizer_dir) if tokenizer_dir and cfg.family == 'bert'
            else None)
  config = hf_config(cfg, layout, pad_id)
  if head is not None:
    if classifier is None:
      raise ConvertError('a classifier head needs its labels to be exported')
    if classifier_lib.num_outputs(head) != classifier.num_labels:
      raise ConvertError(f'the head has {classifier_lib.num_outputs(head)} '
                         f'outputs but {classifier.num_labels} labels are named')
    config.update(classifier_lib.hf_fields(classifier),
                  architectures=[names.CLASSIFIER_ARCHITECTURE[layout]])
    config = dict(sorted(config.items()))
  return layout, config


def export(cfg: BertConfig, params: dict, output: str, layout: str | None = None,
           tokenizer_dir: str | None = None, overwrite: bool = False,
           head: dict | None = None, classifier=None) -> str:
  """Write an HF directory at `output`; returns the layout written.

  With a classifier `head` (`glue.heads`' tree) and its `classifier`
  (`convert.classifier.ClassifierInfo`), the directory is the layout's
  `*ForSequenceClassification` (encoder and head, no masked-LM head), which
  `AutoModelForSequenceClassification` and `pipeline('text-classification')`
  load with the label names. An existing non-empty `output` is refused unless
  `overwrite` (then replaced whole, only after the new one is complete).
  """
  from safetensors.numpy import save_file
  output = os.path.abspath(output)
  if not overwrite:
    fs.refuse_nonempty(output, error=ConvertError)
  layout, config = model_config(cfg, layout, tokenizer_dir, head, classifier)
  tensors = state_dict(cfg, params, layout, mlm_head=head is None)
  if head is not None:
    tensors.update(classifier_lib.head_tensors(layout, head))
  with fs.atomic_dir(output, overwrite=overwrite, error=ConvertError) as tmp:
    with open(os.path.join(tmp, 'config.json'), 'w') as f:
      json.dump(config, f, indent=2)
      f.write('\n')
    save_file(tensors, os.path.join(tmp, 'model.safetensors'),
              metadata={'format': 'pt'})
    copy_tokenizer(tokenizer_dir, tmp)
  return layout


def export_student(workdir: str, cfg: BertConfig, params) -> str:
  """The student as a Hugging Face directory, WORKDIR/hf (replacing an older
  one), with the workdir's tokenizer. `export` writes local files: for a
  remote workdir it writes to a local temp folder (the tokenizer copied down
  first), then uploads it. Raises `ConvertError`."""
  out = workdir_layout.path(workdir, workdir_layout.HF)
  tok = workdir_layout.tokenizer(workdir)
  if not fs.is_remote(out):
    export(cfg, params, out, tokenizer_dir=tok, overwrite=True)
    return out
  staging = tempfile.mkdtemp(prefix='jaxdistil-hf-')
  try:
    local_tok = None
    if tok:
      local_tok = os.path.join(staging, workdir_layout.TOKENIZER)
      fs.copy_tree(tok, local_tok)
    target = os.path.join(staging, workdir_layout.HF)
    export(cfg, params, target, tokenizer_dir=local_tok, overwrite=True)
    fs.copy_tree_up(target, out)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return out


def _pad_id(tokenizer_dir: str) -> int | None:
  """[PAD]'s id from a vocab.txt (0 in BERT's), without loading a tokenizer."""
  vocab = os.path.join(tokenizer_dir, 'vocab.txt')
  if os.path.isfile(vocab):
    with open(vocab, encoding='utf-8') as f:
      for i, line in enumerate(f):
        if line.rstrip('\n') == '[PAD]':
          return i
  return None
