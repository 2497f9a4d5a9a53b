"""Hugging Face BERT or DistilBERT checkpoint -> our params tree.

Accepts `BertForMaskedLM`, `BertForPreTraining` (the NSP head is dropped, the
pooler kept aside), `BertModel` (no MLM head: refused unless
`init_missing_head`), and the DistilBERT equivalents. Real-world key variants
are normalised first: with or without the `bert.`/`distilbert.` prefix, legacy
LayerNorm `gamma`/`beta`, `position_ids` buffers, a tied decoder saved or not,
an untied decoder (`tie_word_embeddings: false`), a pooler present or not.

Nothing is half-loaded: every expected tensor must be there with the shape the
config implies, and every tensor there must be expected, or one line lists what
is wrong before any tensor is read.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import numpy as np

from jaxdistil.convert import names
from jaxdistil.convert.hf_files import ConvertError, Tensors, read_config, resolve
from jaxdistil.models import bert
from jaxdistil.models.bert import BertConfig


class MissingHeadError(ConvertError):
  """A bare encoder (no masked-LM head) where a head is needed."""


@dataclasses.dataclass
class Imported:
  config: BertConfig
  params: dict
  layout: str                        # 'bert' or 'distilbert'
  directory: str                     # where the HF files were read from
  pooler: dict | None = None         # {'dense': {'kernel', 'bias'}} when present
  warnings: list = dataclasses.field(default_factory=list)
  fresh_head: bool = False           # the MLM head was initialised, not read


def _get(config: dict, key: str, path: str):
  if key not in config:
    raise ConvertError(f'{path} lacks "{key}": it is not a complete BERT config')
  return config[key]


def bert_config(config: dict, path: str = 'config.json') -> tuple[str, BertConfig]:
  """(layout, BertConfig) from an HF config.json dict; other architectures refused."""
  model_type = config.get('model_type')
  arch = ', '.join(config.get('architectures') or []) or model_type
  if model_type == 'bert':
    if config.get('position_embedding_type', 'absolute') != 'absolute':
      raise ConvertError(f'{path}: position_embedding_type='
                         f'{config["position_embedding_type"]!r} is not supported; '
                         f'only absolute position embeddings are')
    if config.get('is_decoder'):
      raise ConvertError(f'{path}: is_decoder=true (a causal BERT) is not supported')
    cfg = BertConfig(
        vocab_size=_get(config, 'vocab_size', path),
        hidden_size=_get(config, 'hidden_size', path),
        num_layers=_get(config, 'num_hidden_layers', path),
        num_heads=_get(config, 'num_attention_heads', path),
        intermediate_size=_get(config, 'intermediate_size', path),
        max_position_embeddings=_get(config, 'max_position_embeddings', path),
        type_vocab_size=config.get('type_vocab_size', 2),
        layer_norm_eps=config.get('layer_norm_eps', 1e-12),
        hidden_dropout=config.get('hidden_dropout_prob', 0.1),
        attention_dropout=config.get('attention_probs_dropout_prob', 0.1),
        initializer_range=config.get('initializer_range', 0.02),
        hidden_act=config.get('hidden_act', 'gelu'),
        tie_word_embeddings=config.get('tie_word_embeddings', True))
    layout = 'bert'
  elif model_type == 'distilbert':
    if config.get('sinusoidal_pos_embds'):
      raise ConvertError(f'{path}: sinusoidal_pos_embds=true is not supported; '
                         f'only learned position embeddings are')
    cfg = BertConfig(
        vocab_size=_get(config, 'vocab_size', path),
        hidden_size=_get(config, 'dim', path),
        num_layers=_get(config, 'n_layers', path),
        num_heads=_get(config, 'n_heads', path),
        intermediate_size=_get(config, 'hidden_dim', path),
        max_position_embeddings=_get(config, 'max_position_embeddings', path),
        type_vocab_size=0, layer_norm_eps=1e-12,   # fixed in HF's DistilBERT
        hidden_dropout=config.get('dropout', 0.1),
        attention_dropout=config.get('attention_dropout', 0.1),
        initializer_range=config.get('initializer_range', 0.02),
        hidden_act=config.get('activation', 'gelu'),
        tie_word_embeddings=config.get('tie_word_embeddings', True),
        layout='distilbert')
    layout = 'distilbert'
  else:
    raise ConvertError(f'{path} describes a {arch} model (model_type={model_type!r}); '
                       f'only BERT and DistilBERT architectures can be imported')
  if cfg.hidden_act not in bert.ACTIVATIONS:
    raise ConvertError(f'{path}: activation {cfg.hidden_act!r} is not supported '
                       f'(supported: {", ".join(bert.ACTIVATIONS)})')
  if cfg.hidden_size % cfg.num_heads:
    raise ConvertError(f'{path}: hidden size {cfg.hidden_size} is not divisible by '
                       f'{cfg.num_heads} heads')
  return layout, cfg


def _canonical(raw: str, layout: str) -> str:
  """A state-dict name without the model prefix and with modern LayerNorm names."""
  name = raw
  prefix = names.PREFIX[layout]
  if name.startswith(prefix):
    name = name[len(prefix):]
  if name.endswith('.gamma'):
    name = name[:-len('gamma')] + 'weight'
  elif name.endswith('.beta'):
    name = name[:-len('beta')] + 'bias'
  return name


def _ignored(name: str, layout: str, cfg: BertConfig) -> bool:
  """Tensors that carry nothing our MLM model uses (or that HF re-ties on load)."""
  if name.endswith('position_ids'):
    return True
  if layout == 'bert':
    if name.startswith('cls.seq_relationship.'):        # NSP head
      return True
    if cfg.tie_word_embeddings and name == 'cls.predictions.decoder.weight':
      return True
  else:
    if cfg.tie_word_embeddings and name == 'vocab_projector.weight':
      return True
  return False


POOLER = ('pooler.dense.weight', 'pooler.dense.bias')


def _fresh_head(cfg: BertConfig, rng) -> dict:
  """A newly initialised MLM transform and bias (BERT's init), decoder tied."""
  return jax.device_get(bert.init(cfg, rng)['cls'])


def import_hf(name_or_dir: str, init_missing_head: bool = False,
              rng: jax.Array | None = None, shardings=None) -> Imported:
  """Read an HF checkpoint into our params (float32), tensor by tensor.

  `shardings` (a tree like the params, or a function of the checkpoint's
  BertConfig giving one; optional) places each tensor on its devices as soon as
  it is read, so the host holds one tensor at a time.
  """
  directory = resolve(name_or_dir)
  config_path = os.path.join(directory, 'config.json')
  layout, cfg = bert_config(read_config(directory), config_path)
  tensors = Tensors(directory)

  # Normalise every name; sort into expected, ignored and unexpected.
  by_name: dict[str, str] = {}
  pooler_names = {}
  unexpected, duplicates = [], []
  for raw in tensors.names():
    name = _canonical(raw, layout)
    if name in POOLER:
      pooler_names[name] = raw
      continue
    if _ignored(name, layout, cfg):
      continue
    if name in by_name:
      duplicates.append(raw)
    by_name[name] = raw
  if duplicates:
    raise ConvertError(f'{directory}: tensors appear twice under different names '
                       f'({", ".join(sorted(duplicates)[:5])}): fix the checkpoint')
  if layout == 'bert':
    # The output bias is saved as `cls.predictions.bias`, as the decoder's own
    # `cls.predictions.decoder.bias`, or both. Tied (the default), HF makes the
    # decoder's bias that of `cls.predictions`; untied, its forward pass uses the
    # decoder's. Take the one HF would use, the other when only it is there.
    decoder_bias = by_name.pop('cls.predictions.decoder.bias', None)
    if decoder_bias and ('cls.predictions.bias' not in by_name
                         or not cfg.tie_word_embeddings):
      by_name['cls.predictions.bias'] = decoder_bias

  wanted = names.entries(layout, cfg)
  known = {e.hf for e in wanted}
  unexpected = sorted(n for n in by_name if n not in known)
  missing = [e for e in wanted if e.hf not in by_name]
  warnings = []
  missing_head = [e for e in missing if e.head]
  head_entries = [e for e in wanted if e.head]
  fresh_head = False
  if missing_head and len(missing_head) == len(head_entries):
    if not init_missing_head:
      raise MissingHeadError(
          f'{directory} has no masked-LM head (a bare encoder such as BertModel): '
          f'pass --init_missing_head to initialise one (decoder tied to the word '
          f'embeddings, fresh transform)')
    fresh_head = True
    if not cfg.tie_word_embeddings:
      cfg = cfg.replace(tie_word_embeddings=True)
      wanted = names.entries(layout, cfg)
    wanted = [e for e in wanted if not e.head]
    missing = [e for e in missing if not e.head]
    warnings.append(f'{directory} has no masked-LM head: initialised a fresh '
                    f'transform and bias, decoder tied to the word embeddings; '
                    f'train or fine-tune before trusting its MLM outputs')
  if missing or unexpected:
    parts = []
    if missing:
      parts.append(f'missing {len(missing)} tensor(s): '
                   f'{", ".join(e.hf for e in missing[:6])}'
                   f'{" ..." if len(missing) > 6 else ""}')
    if unexpected:
      parts.append(f'unexpected {len(unexpected)} tensor(s): '
                   f'{", ".join(unexpected[:6])}{" ..." if len(unexpected) > 6 else ""}')
    raise ConvertError(f'{directory} does not match its config.json '
                       f'({layout}, {cfg.num_layers} layers): {"; ".join(parts)}')

  # Shapes, from the files' headers, before any tensor is read.
  abstract = jax.eval_shape(lambda: bert.init(cfg, jax.random.key(0)))
  ours_shapes = {tuple(str(k.key) for k in path): tuple(x.shape)
                 for path, x in jax.tree_util.tree_leaves_with_path(abstract)}
  wrong = []
  for e in wanted:
    want = names.hf_shape(e, ours_shapes[e.ours])
    got = tensors.shape(by_name[e.hf])
    if tuple(got) != want:
      wrong.append(f'{e.hf} is {list(got)}, config implies {list(want)}')
  if wrong:
    raise ConvertError(f'{directory}: weights disagree with config.json: '
                       f'{"; ".join(wrong[:4])}{" ..." if len(wrong) > 4 else ""}')

  # Read tensor by tensor into the tree.
  flat_shardings = None
  if callable(shardings):             # shardings_for(config): known only now
    shardings = shardings(cfg)
  if shardings is not None:
    flat_shardings = {tuple(str(k.key) for k in path): s for path, s in
                      jax.tree_util.tree_leaves_with_path(shardings)}
  params: dict = {}
  for e in wanted:
    value = names.to_ours(e, np.asarray(tensors.get(by_name[e.hf]), np.float32),
                          ours_shapes[e.ours])
    if flat_shardings is not None:
      value = jax.device_put(value, flat_shardings[e.ours])
    node = params
    for key in e.ours[:-1]:
      node = node.setdefault(key, {})
    node[e.ours[-1]] = value
  if fresh_head:
    rng = jax.random.key(0) if rng is None else rng
    params['cls'] = _fresh_head(cfg, rng)
    if flat_shardings is not None:
      params['cls'] = jax.tree_util.tree_map_with_path(
          lambda p, x: jax.device_put(
              x, flat_shardings[('cls',) + tuple(str(k.key) for k in p)]),
          params['cls'])

  pooler = None
  if len(pooler_names) == 2:
    w = np.asarray(tensors.get(pooler_names['pooler.dense.weight']), np.float32)
    b = np.asarray(tensors.get(pooler_names['pooler.dense.bias']), np.float32)
    pooler = {'dense': {'kernel': np.ascontiguousarray(w.T), 'bias': b}}
  for w in warnings:
    print(f'jaxdistil: warning: {w}', file=sys.stderr)
  return Imported(config=cfg, params=params, layout=layout, directory=directory,
                  pooler=pooler, warnings=warnings, fresh_head=fresh_head)
