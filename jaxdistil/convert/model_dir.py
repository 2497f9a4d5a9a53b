"""Our own model directory, and `load_model`: one loader for every kind of model.

A jaxdistil model directory (what `convert import` writes, and what a teacher
given as a checkpoint is) holds

    jaxdistil_model.json   {"format": "jaxdistil-model", "config": {...BertConfig},
                            "layout": "bert" | "distilbert", "source": ...}
    params/                orbax checkpoint of the params tree (float32)
    pooler.npz             BERT's pooler, when the source had one (GLUE uses it)
    head.npz               a sequence classifier's head (`glue.heads`' tree,
                           flattened with '/'), its labels under "classifier"
    vocab.txt, ...         the tokenizer files

`load_model(path)` reads any of: such a directory; a `train` workdir (the
student of its latest checkpoint, described by the workdir's `model.json`); a
Hugging Face directory; a hub id. `load_with_tokenizer` adds the tokenizer to
feed it: a `--tokenizer` given, else the model's own, else one line asking
for `--tokenizer`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

import jax
import numpy as np

from jaxdistil import fs, workdir
from jaxdistil.convert import hf_in
from jaxdistil.convert.classifier import ClassifierInfo
from jaxdistil.convert.hf_files import ConvertError
from jaxdistil.convert.loaded import Loaded
from jaxdistil.data import tokenizer as tokenizer_lib
from jaxdistil.data.tokenizer import copy_tokenizer, has_tokenizer
from jaxdistil.models import bert
from jaxdistil.models.config import BertConfig

MODEL_FILE = 'jaxdistil_model.json'
FORMAT = 'jaxdistil-model'


def config_to_dict(cfg: BertConfig) -> dict:
  return dataclasses.asdict(cfg)


def config_from_dict(d: dict, where: str) -> BertConfig:
  fields = {f.name for f in dataclasses.fields(BertConfig)}
  unknown = sorted(set(d) - fields)
  if unknown:
    raise ConvertError(f'{where}: unknown model config field(s) {unknown}: written '
                       f'by a newer jaxdistil?')
  return BertConfig(**d)


def _abstract(cfg: BertConfig, shardings=None):
  abstract = jax.eval_shape(lambda: bert.init(cfg, jax.random.key(0)))
  if shardings is None:
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda _: one, abstract)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      abstract, shardings)


def save_model(output: str, cfg: BertConfig, params: dict, layout: str,
               source: str = '', tokenizer_dir: str | None = None,
               pooler: dict | None = None, fresh_head: bool = False,
               head: dict | None = None, classifier=None) -> None:
  """Write a model directory (beside `output`, then renamed into place).
  `fresh_head` records that the MLM head was initialised at import, not
  trained, so that nothing takes its outputs as a teacher's. A classifier's
  `head` is kept with its labels (`classifier`, a `ClassifierInfo`)."""
  import orbax.checkpoint as ocp
  with fs.atomic_dir(output, error=ConvertError) as tmp:
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(os.path.join(tmp, 'params'), params)
    ckpt.wait_until_finished()
    if pooler is not None:
      np.savez(os.path.join(tmp, 'pooler.npz'), kernel=pooler['dense']['kernel'],
               bias=pooler['dense']['bias'])
    copy_tokenizer(tokenizer_dir, tmp)
    meta = {'format': FORMAT, 'version': 1, 'layout': layout, 'source': source,
            'config': config_to_dict(cfg)}
    if fresh_head:
      meta['fresh_head'] = True
    if head is not None:
      flat = {'/'.join(str(k.key) for k in path): np.asarray(x, np.float32)
              for path, x in jax.tree_util.tree_leaves_with_path(head)}
      np.savez(os.path.join(tmp, 'head.npz'), **flat)
      meta['classifier'] = classifier.to_dict()
    with open(os.path.join(tmp, MODEL_FILE), 'w') as f:
      json.dump(meta, f, indent=2)


def _read_json(path: str) -> dict:
  try:
    return json.loads(fs.read_text(path))
  except (OSError, ValueError) as e:
    raise ConvertError(f'cannot read {path} ({type(e).__name__}): the directory is '
                       f'damaged') from None


def _restore_params(path: str, cfg: BertConfig, shardings, where: str,
                    key: str | None = None) -> dict:
  """The params tree at `path` (under `key` of a larger tree, if given)."""
  import orbax.checkpoint as ocp
  item = _abstract(cfg, shardings)
  if key:
    item = {key: item}
  try:
    out = ocp.PyTreeCheckpointer().restore(path, args=ocp.args.PyTreeRestore(
        item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
        partial_restore=True))
    return out[key] if key else out
  except Exception as e:
    raise ConvertError(f'cannot read the parameters in {where} '
                       f'({type(e).__name__}: {str(e).splitlines()[0][:200]}): the '
                       f'checkpoint is damaged or of another model') from None


def read_model_dir(path: str, shardings_for: Callable | None = None) -> Loaded:
  meta = _read_json(os.path.join(path, MODEL_FILE))
  if meta.get('format') != FORMAT:
    raise ConvertError(f'{path}/{MODEL_FILE} is not a jaxdistil model description')
  cfg = config_from_dict(meta['config'], path)
  shardings = shardings_for(cfg) if shardings_for else None
  params = _restore_params(os.path.join(path, 'params'), cfg, shardings, path)
  pooler = None
  if os.path.isfile(os.path.join(path, 'pooler.npz')):
    with np.load(os.path.join(path, 'pooler.npz')) as z:
      pooler = {'dense': {'kernel': z['kernel'], 'bias': z['bias']}}
  head = info = None
  if meta.get('classifier') is not None:
    head = {}
    with np.load(os.path.join(path, 'head.npz')) as z:
      for key in z.files:
        node = head
        *parents, leaf = key.split('/')
        for k in parents:
          node = node.setdefault(k, {})
        node[leaf] = z[key]
    info = ClassifierInfo.from_dict(meta['classifier'])
  return Loaded(cfg, params, meta.get('layout', 'bert'),
                path if has_tokenizer(path) else None, pooler,
                meta.get('source', ''), 'model_dir',
                bool(meta.get('fresh_head', False)), head=head, classifier=info)


def read_workdir(path: str, shardings_for: Callable | None = None,
                 step: int | None = None) -> Loaded:
  """The student of a train workdir's latest (or given) checkpoint; `path`
  may be a URL (gs://) as well as a local folder."""
  described = fs.join(path, workdir.MODEL)
  meta = _read_json(described)
  cfg = config_from_dict(meta['student'], described)
  if 'layout' not in meta['student']:      # written before BertConfig.layout
    cfg = cfg.replace(layout=meta.get('layout', 'distilbert'))
  step = workdir.latest_step(path) if step is None else step
  if step is None:
    raise ConvertError(f'{path} holds no checkpoint yet: train first, or give a '
                       f'model directory')
  shardings = shardings_for(cfg) if shardings_for else None
  state = workdir.state_path(path, step)
  params = _restore_params(state, cfg, shardings, fs.dirname(state), key='params')
  return Loaded(cfg, params, meta.get('layout', 'distilbert'),
                workdir.tokenizer(path), None, f'{path} step {step}', 'workdir')


def load_model(path_or_id: str, init_missing_head: bool = False,
               shardings_for: Callable | None = None) -> Loaded:
  """Any model we can read, as (config, params, tokenizer, ...); see the module doc.

  `shardings_for(config)` may give a shardings tree to place the params on.
  """
  path = path_or_id if fs.is_remote(path_or_id) else os.path.expanduser(path_or_id)
  if fs.is_remote(path) and not fs.isdir(path):
    raise ConvertError(f'{path_or_id} does not exist')
  if fs.isdir(path):
    if fs.isfile(fs.join(path, MODEL_FILE)):
      return read_model_dir(path, shardings_for)
    if workdir.is_workdir(path):
      return read_workdir(path, shardings_for)
    if fs.is_remote(path):
      raise ConvertError(f'{path_or_id}: only jaxdistil model directories and '
                         f'train workdirs are read from remote storage; copy a '
                         f'Hugging Face model to a local folder first')
    if not os.path.isfile(os.path.join(path, 'config.json')):
      raise ConvertError(
          f'{path_or_id} is neither a Hugging Face model (no config.json), a '
          f'jaxdistil model ({MODEL_FILE}) nor a train workdir ({workdir.MODEL})')
  return hf_in.import_hf(path_or_id, init_missing_head, shardings=shardings_for)


def load_with_tokenizer(path: str, tokenizer: str | None = None,
                        flag: str | None = '--tokenizer'):
  """(`Loaded`, tokenizer) of a model to fine-tune or run: `load_model(path)`
  (a checkpoint without an MLM head too: a task brings its own head) and the
  tokenizer `tokenizer` names (a folder or hub id) when given, else the
  model's own. A model with neither is one ConvertError line, naming `flag`
  (the command's flag for a tokenizer, if it has one); a tokenizer that does
  not load is one `TokenizerError` line."""
  loaded = load_model(path, init_missing_head=True)
  if tokenizer:
    return loaded, tokenizer_lib.load(tokenizer)
  if not loaded.tokenizer_dir:
    raise ConvertError(f'{path} has no tokenizer files (vocab.txt or '
                       f'tokenizer.json)' + (f': pass {flag}=DIR' if flag else ''))
  return loaded, tokenizer_lib.load_folder(loaded.tokenizer_dir)
