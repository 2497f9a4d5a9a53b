"""Table 3's classifiers as Hugging Face folders, and their ONNX exports.

Two (teacher, student) pairs, each model with a 2-way head named as MRPC's
classes:

- `base`: BERT-base against DistilBERT-base shapes (12 and 6 layers, hidden
  768, vocabulary 30,522), random weights (`bert.init`: N(0, 0.02)); time
  does not depend on them.
- `minilm`: MiniLM-L6-H384 with its real weights (a `BertModel` folder; its
  pooler is kept in the BERT head) against its 3-layer student: layers 0, 2
  and 5 by `student_init` (DistilBERT's layout, token type 0 folded into the
  positions), as `glue --student_layers=0,2,5` draws it.

Heads are random, with kernels N(0, 1/H), so logits are O(1) and comparing
frameworks at 1e-4 is not vacuous (a given pooler is kept as it is). Every
folder is written by our export (`convert.export` with `head=` and
`classifier=`), which `transformers` loads as `*ForSequenceClassification`,
and the ONNX file is `torch.onnx.export` (the dynamo exporter, dynamic batch
and sequence axes) of that very `transformers` model. `--tiny` builds the same
four at tiny sizes, a random 6-layer model standing in for MiniLM.

A folder or ONNX file that already exists in the work folder is reused, so a
second run (or a run after `--prepare_only`) starts timing at once.
"""

from __future__ import annotations

import json
import os

import numpy as np

LABELS = ('not_equivalent', 'equivalent')
ROLES = ('teacher', 'student')


def specs(tiny: bool) -> list[dict]:
  """[{name, pair, role, layers}] in table order: each pair's teacher first."""
  names = ([('tiny-bert', 'base'), ('tiny-distilbert', 'base'),
            ('tiny-minilm', 'minilm'), ('tiny-minilm-3l', 'minilm')] if tiny
           else [('bert-base', 'base'), ('distilbert-base', 'base'),
                 ('minilm-l6-h384', 'minilm'), ('minilm-3l-student', 'minilm')])
  layers = (4, 2, 6, 3) if tiny else (12, 6, 6, 3)
  return [{'name': n, 'pair': p, 'role': ROLES[i % 2], 'layers': l}
          for i, ((n, p), l) in enumerate(zip(names, layers))]


def _random_head(cfg, seed: int, pooler=None) -> dict:
  """A 2-way head of `cfg`'s layout, kernels N(0, 1/H) (a given pooler kept)."""
  import jax
  from jaxdistil.glue import heads
  head = heads.init_head(cfg, len(LABELS), jax.random.key(seed), pooler)
  scale = (1.0 / np.sqrt(cfg.hidden_size)) / cfg.initializer_range
  out = {}
  for name, sub in head.items():
    if name == 'pooler' and pooler is not None:
      out[name] = sub
    elif name == 'pooler':
      out[name] = {'dense': dict(sub['dense'],
                                 kernel=sub['dense']['kernel'] * scale)}
    else:
      out[name] = dict(sub, kernel=sub['kernel'] * scale)
  return jax.tree.map(np.asarray, out)


def _without_mlm(params: dict) -> dict:
  return {k: v for k, v in params.items() if k not in ('cls', 'pooler')}


def _build(spec: dict, tiny: bool, minilm: str | None, vocab_dir: str):
  """(config, params, head, layout, tokenizer folder) of one model."""
  import jax
  from jaxdistil import convert
  from jaxdistil.glue import teacher as glue_teacher
  from jaxdistil.models import bert
  seed = specs(tiny).index(spec)
  if spec['pair'] == 'base':
    size = (dict(hidden_size=64, num_heads=4, intermediate_size=128,
                 max_position_embeddings=128) if tiny else {})
    cfg = bert.BertConfig(num_layers=spec['layers'], **size)
    if spec['role'] == 'student':
      cfg = cfg.replace(type_vocab_size=0, layout='distilbert')
    params = bert.init(cfg, jax.random.key(seed))
    layout = 'bert' if spec['role'] == 'teacher' else 'distilbert'
    return cfg, params, _random_head(cfg, 100 + seed), layout, vocab_dir
  if tiny:
    cfg = bert.BertConfig(num_layers=6, hidden_size=48, num_heads=4,
                          intermediate_size=96, max_position_embeddings=128)
    params = bert.init(cfg, jax.random.key(seed))
    pooler = {'dense': {'kernel': np.asarray(jax.random.normal(
        jax.random.key(7), (48, 48))) * 0.1, 'bias': np.zeros(48, np.float32)}}
    tok = vocab_dir
  else:
    loaded = convert.load_model(minilm, init_missing_head=True)
    cfg, params, pooler = loaded.config, loaded.params, loaded.pooler
    tok = loaded.tokenizer_dir
  if spec['role'] == 'teacher':
    return cfg, params, _random_head(cfg, 100 + seed, pooler), 'bert', tok
  cfg, params = glue_teacher.student_of(cfg, params, (0, 2, 5), 'the teacher')
  return cfg, params, _random_head(cfg, 100 + seed), 'distilbert', tok


def write_folders(workdir: str, tiny: bool, minilm: str | None,
                  vocab_dir: str) -> list[dict]:
  """The four models as HF folders under `workdir` (reused when present);
  each spec gains `folder` and `layout`."""
  from jaxdistil import convert
  from jaxdistil.convert.classifier import ClassifierInfo
  out = []
  for spec in specs(tiny):
    folder = os.path.join(workdir, spec['name'])
    if not os.path.isfile(os.path.join(folder, 'model.safetensors')):
      cfg, params, head, layout, tok = _build(spec, tiny, minilm, vocab_dir)
      convert.export(cfg, _without_mlm(params), folder, layout=layout,
                     tokenizer_dir=tok, overwrite=True, head=head,
                     classifier=ClassifierInfo(LABELS, task='MRPC'))
    with open(os.path.join(folder, 'config.json')) as f:
      arch = json.load(f)['architectures'][0]
    layout = 'distilbert' if arch.startswith('DistilBert') else 'bert'
    out.append(dict(spec, folder=folder, layout=layout))
  return out


def input_names(layout: str) -> list[str]:
  return (['input_ids', 'attention_mask', 'token_type_ids'] if layout == 'bert'
          else ['input_ids', 'attention_mask'])


def export_onnx(model: dict, threads: int = 2) -> str:
  """`model['folder']`'s transformers classifier as ONNX (reused when present):
  inputs named as its forward's, [batch, seq] both dynamic, output `logits`."""
  path = os.path.join(model['folder'], 'model.onnx')
  if os.path.isfile(path):
    return path
  import torch
  import transformers
  torch.set_num_threads(threads)
  hf = transformers.AutoModelForSequenceClassification.from_pretrained(
      model['folder']).eval()
  names = input_names(model['layout'])
  example = {n: torch.ones((2, 16), dtype=torch.long) for n in names}
  batch, seq = torch.export.Dim('batch'), torch.export.Dim('seq')
  tmp = path + '.tmp.onnx'
  with torch.inference_mode():
    torch.onnx.export(hf, (), tmp, kwargs=example, input_names=names,
                      output_names=['logits'], dynamo=True,
                      external_data=False, verbose=False,
                      dynamic_shapes={n: {0: batch, 1: seq} for n in names})
  os.replace(tmp, path)
  return path


def export_ours(model: dict, quantize: str | None = None) -> str:
  """`model['folder']` as ONNX by our own export (`convert export
  --format=onnx`, float32 or int8), reused when present."""
  from jaxdistil.convert import load_model
  from jaxdistil.convert.onnx_out import MODEL, export_onnx
  out = os.path.join(model['folder'], f'onnx_{quantize or "float32"}')
  if not os.path.isfile(os.path.join(out, MODEL)):
    m = load_model(model['folder'])
    export_onnx(m.config, m.params, out, head=m.head, classifier=m.classifier,
                tokenizer_dir=m.tokenizer_dir, quantize=quantize, overwrite=True,
                source=model['folder'])
  return os.path.join(out, MODEL)
