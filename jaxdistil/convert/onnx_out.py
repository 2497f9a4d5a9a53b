"""A classifier as an ONNX folder, optionally int8: what a CPU server runs.

    python -m jaxdistil.convert export --format=onnx --checkpoint=DIR \\
        --output=DIR [--quantize=int8]

The folder holds `model.onnx` (`onnx_graph.build`: inputs `input_ids`,
`attention_mask` and, with token types, `token_type_ids`, int64; output
`logits`), the `config.json` the same model's Hugging Face export has (labels
included), the tokenizer files, and `jaxdistil_onnx.json` (what was exported
and how). That is the layout Hugging Face Optimum's ONNX models use, and
`python -m jaxdistil.predict --runtime=onnxruntime` reads it.

`--quantize=int8` is ONNX Runtime's dynamic quantization
(`onnxruntime.quantization.quantize_dynamic`): int8 weights for every MatMul
and embedding table, activations quantized per call. onnx and onnxruntime
come with the `onnx` extra (`pip install 'jaxdistil[onnx]'`); without them
the export is one line naming it.
"""

from __future__ import annotations

import json
import os

import jax

from jaxdistil import fs
from jaxdistil.convert import hf_out, onnx_graph
from jaxdistil.convert.hf_files import ConvertError
from jaxdistil.data.tokenizer import copy_tokenizer
from jaxdistil.models.config import BertConfig

MODEL = 'model.onnx'
INFO = 'jaxdistil_onnx.json'
QUANTIZE = ('int8',)
EXTRA = "pip install 'jaxdistil[onnx]'"
# protobuf's limit is 2 GiB; larger models keep their tensors beside the graph.
INLINE_LIMIT = 1_800_000_000


def need(module: str):
  """Import `module` (onnx, onnxruntime), or one line naming the extra."""
  import importlib
  try:
    return importlib.import_module(module)
  except ImportError:
    raise ConvertError(f'{module} is not installed: {EXTRA}') from None


def _save(model, path: str) -> None:
  onnx = need('onnx')
  size = sum(t.ByteSize() for t in model.graph.initializer)
  if size < INLINE_LIMIT:
    onnx.save_model(model, path)
  else:
    onnx.save_model(model, path, save_as_external_data=True,
                    all_tensors_to_one_file=True,
                    location=os.path.basename(path) + '.data')


def quantize_int8(source: str, target: str) -> None:
  """ONNX Runtime's dynamic int8 quantization of the model at `source`."""
  need('onnxruntime')
  import logging
  from onnxruntime.quantization import QuantType, quantize_dynamic
  # It logs a warning on the root logger on every call advising its
  # pre-processing pass (not used: measured without it, RESULTS.md); the
  # root level is raised for the call only.
  root = logging.getLogger()
  level = root.level
  root.setLevel(max(level, logging.ERROR))
  try:
    quantize_dynamic(source, target, weight_type=QuantType.QInt8)
  finally:
    root.setLevel(level)


def export_onnx(cfg: BertConfig, params: dict, output: str, *, head: dict | None,
                classifier, layout: str | None = None,
                tokenizer_dir: str | None = None, quantize: str | None = None,
                overwrite: bool = False, source: str = '') -> dict:
  """Write the ONNX folder at `output`; returns its `jaxdistil_onnx.json`.

  A model without a classifier head is refused (only classifiers are served
  here), as is an existing non-empty `output` without `overwrite`; both
  before anything is built. The folder appears whole or not at all."""
  if head is None:
    raise ConvertError('ONNX export is for classifiers and this model has no '
                       'classifier head: fine-tune it first (jaxdistil.glue '
                       '--save), or export it as a Hugging Face folder')
  if quantize not in (None,) + QUANTIZE:
    raise ConvertError(f'--quantize={quantize}: use one of {", ".join(QUANTIZE)}')
  output = os.path.abspath(output)
  if not overwrite:
    fs.refuse_nonempty(output, error=ConvertError)
  need('onnx')
  if quantize:
    need('onnxruntime')
  layout, config = hf_out.model_config(cfg, layout, tokenizer_dir, head,
                                       classifier)
  params, head = jax.device_get((params, head))
  model = onnx_graph.build(cfg, params, head)
  info = {'format': 'jaxdistil-onnx', 'model': MODEL, 'quantize': quantize,
          'opset': onnx_graph.OPSET, 'layout': layout, 'source': source,
          'inputs': [i.name for i in model.graph.input],
          'labels': list(classifier.labels)}
  with fs.atomic_dir(output, overwrite=overwrite, error=ConvertError) as tmp:
    target = os.path.join(tmp, MODEL)
    if quantize:
      plain = os.path.join(tmp, 'float32.onnx')
      _save(model, plain)
      quantize_int8(plain, target)
      for name in os.listdir(tmp):
        if name.startswith('float32.onnx'):
          os.remove(os.path.join(tmp, name))
    else:
      _save(model, target)
    for name, value in (('config.json', config), (INFO, info)):
      with open(os.path.join(tmp, name), 'w') as f:
        json.dump(value, f, indent=2)
        f.write('\n')
    copy_tokenizer(tokenizer_dir, tmp)
  return info
