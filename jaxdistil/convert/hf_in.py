"""Hugging Face BERT, DistilBERT, RoBERTa or XLM-RoBERTa checkpoint -> our params.

Accepts `BertForMaskedLM`, `BertForPreTraining` (the NSP head is dropped, the
pooler kept aside), `BertModel` (no MLM head: refused unless
`init_missing_head`), and the DistilBERT, RoBERTa and XLM-RoBERTa equivalents
(`RobertaForMaskedLM`: the `roberta.` encoder and the `lm_head.` head). Real-world key variants
are normalised first: with or without the `bert.`/`distilbert.` prefix, legacy
LayerNorm `gamma`/`beta`, `position_ids` buffers, a tied decoder saved or not,
an untied decoder (`tie_word_embeddings: false`), a pooler present or not.

Nothing is half-loaded: every expected tensor must be there with the shape the
config implies, and every tensor there must be expected, or one line lists what
is wrong before any tensor is read.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np

from jaxdistil.convert import classifier as classifier_lib
from jaxdistil.convert import hf_config, names
from jaxdistil.convert.hf_files import ConvertError, Tensors, read_config, resolve
from jaxdistil.convert.loaded import Loaded
from jaxdistil.models import bert
from jaxdistil.data.tokenizer import has_tokenizer
from jaxdistil.models.config import BertConfig


class MissingHeadError(ConvertError):
  """A bare encoder (no masked-LM head) where a head is needed."""


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
  elif layout in ('roberta', 'xlm-roberta'):
    if cfg.tie_word_embeddings and name == 'lm_head.decoder.weight':
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
              rng: jax.Array | None = None, shardings=None) -> Loaded:
  """Read an HF checkpoint into our params (float32), tensor by tensor.

  `shardings` (a tree like the params, or a function of the checkpoint's
  BertConfig giving one; optional) places each tensor on its devices as soon as
  it is read, so the host holds one tensor at a time.
  """
  directory = resolve(name_or_dir)
  config_path = os.path.join(directory, 'config.json')
  hf = read_config(directory)
  layout, cfg = hf_config.to_ours(hf, config_path)
  tensors = Tensors(directory)
  head_names = classifier_lib.head_names(layout)

  # Normalise every name; sort into expected, ignored and unexpected.
  by_name: dict[str, str] = {}
  pooler_names, head_found = {}, {}
  unexpected, duplicates = [], []
  for raw in tensors.names():
    name = _canonical(raw, layout)
    if name in POOLER:
      pooler_names[name] = raw
      continue
    if name in head_names:          # a sequence-classification head
      head_found[name] = raw
      continue
    if _ignored(name, layout, cfg):
      continue
    if name in by_name:
      duplicates.append(raw)
    by_name[name] = raw
  if duplicates:
    raise ConvertError(f'{directory}: tensors appear twice under different names '
                       f'({", ".join(sorted(duplicates)[:5])}): fix the checkpoint')
  if layout != 'distilbert':
    # The output bias is saved as `cls.predictions.bias` (RoBERTa:
    # `lm_head.bias`), as the decoder's own `...decoder.bias`, or both. Tied
    # (the default), HF makes the decoder's bias the head's; untied, its
    # forward pass uses the decoder's. Take the one HF would use, the other
    # when only it is there.
    head = 'cls.predictions' if layout == 'bert' else 'lm_head'
    decoder_bias = by_name.pop(f'{head}.decoder.bias', None)
    if decoder_bias and (f'{head}.bias' not in by_name
                         or not cfg.tie_word_embeddings):
      by_name[f'{head}.bias'] = decoder_bias

  wanted = names.entries(layout, cfg)
  known = {e.hf for e in wanted}
  unexpected = sorted(n for n in by_name if n not in known)
  missing = [e for e in wanted if e.hf not in by_name]
  warnings = []
  missing_head = [e for e in missing if e.head]
  head_entries = [e for e in wanted if e.head]
  fresh_head = False
  is_classifier = bool(head_found)
  if is_classifier and set(head_found) != head_names:
    raise ConvertError(f'{directory}: the classifier head is incomplete: missing '
                       f'{", ".join(sorted(head_names - set(head_found)))}')
  if missing_head and len(missing_head) == len(head_entries):
    if not (init_missing_head or is_classifier):
      raise MissingHeadError(
          f'{directory} has no masked-LM head (a bare encoder such as BertModel '
          f'or RobertaModel): '
          f'pass --init_missing_head to initialise one (decoder tied to the word '
          f'embeddings, fresh transform)')
    fresh_head = True
    if not cfg.tie_word_embeddings:
      cfg = cfg.replace(tie_word_embeddings=True)
      wanted = names.entries(layout, cfg)
    wanted = [e for e in wanted if not e.head]
    missing = [e for e in missing if not e.head]
    if not is_classifier:   # a classifier needs none: nothing to warn about
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
  head = info = None
  if is_classifier:
    head = classifier_lib.read_head(
        layout, lambda n: tensors.get(head_found[n]), pooler, directory,
        cfg.hidden_size)
    info = classifier_lib.info_from_hf(hf, classifier_lib.num_outputs(head),
                                       config_path)
  for w in warnings:
    print(f'jaxdistil: warning: {w}', file=sys.stderr)
  return Loaded(config=cfg, params=params, layout=layout,
                tokenizer_dir=directory if has_tokenizer(directory) else None,
                pooler=pooler, source=name_or_dir, kind='hf', fresh_head=fresh_head,
                warnings=warnings, head=head, classifier=info)
