"""Which Hugging Face tensor is which of our parameters: one table per layout.

Each `Entry` ties a path in our params tree to a PyTorch state-dict name (without
the model prefix `bert.` / `distilbert.`, which `hf_in` strips) and says how the
array changes on the way:

- `split=None`: same values, reshaped (embeddings, LayerNorms, biases: an
  attention bias [hidden] is our [heads, kv]);
- `split=k`: a `nn.Linear` weight, [out, in] in PyTorch, is our kernel [in..., out...]
  where the first k of our axes make up `in` (1 for a dense or a query, 2 for
  the attention output, whose input is [heads, kv]).

Both directions are exact (transposes and reshapes only), so HF -> ours -> HF
reproduces every tensor bit for bit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxdistil.models.config import BertConfig


@dataclasses.dataclass(frozen=True)
class Entry:
  ours: tuple[str, ...]        # path in our params tree
  hf: str                      # state-dict name, model prefix stripped
  split: int | None = None     # see the module docstring
  head: bool = False           # part of the MLM head (absent from BertModel)


def _dense(ours, hf, split=1, head=False):
  return [Entry(ours + ('kernel',), hf + '.weight', split, head),
          Entry(ours + ('bias',), hf + '.bias', None, head)]


def _ln(ours, hf, head=False):
  return [Entry(ours + ('scale',), hf + '.weight', None, head),
          Entry(ours + ('bias',), hf + '.bias', None, head)]


def _layer(i, q, k, v, o, ln1, ffn_in, ffn_out, ln2):
  p = ('encoder', f'layer_{i}')
  att = p + ('attention',)
  return (_dense(att + ('self', 'query'), q) + _dense(att + ('self', 'key'), k) +
          _dense(att + ('self', 'value'), v) +
          _dense(att + ('output', 'dense'), o, split=2) +
          _ln(att + ('output', 'LayerNorm'), ln1) +
          _dense(p + ('intermediate', 'dense'), ffn_in) +
          _dense(p + ('output', 'dense'), ffn_out) +
          _ln(p + ('output', 'LayerNorm'), ln2))


def _bert_encoder(cfg: BertConfig) -> list[Entry]:
  """BERT's encoder names, which RoBERTa and XLM-RoBERTa share."""
  emb = ('embeddings',)
  out = [Entry(emb + ('word_embeddings', 'embedding'), 'embeddings.word_embeddings.weight'),
         Entry(emb + ('position_embeddings', 'embedding'),
               'embeddings.position_embeddings.weight')]
  if cfg.type_vocab_size:
    out.append(Entry(emb + ('token_type_embeddings', 'embedding'),
                     'embeddings.token_type_embeddings.weight'))
  out += _ln(emb + ('LayerNorm',), 'embeddings.LayerNorm')
  for i in range(cfg.num_layers):
    p = f'encoder.layer.{i}.'
    out += _layer(i, p + 'attention.self.query', p + 'attention.self.key',
                  p + 'attention.self.value', p + 'attention.output.dense',
                  p + 'attention.output.LayerNorm', p + 'intermediate.dense',
                  p + 'output.dense', p + 'output.LayerNorm')
  return out


def bert_entries(cfg: BertConfig) -> list[Entry]:
  """`BertForMaskedLM` names: `bert.` is the encoder's prefix, `cls.` the head's."""
  out = _bert_encoder(cfg)
  head = ('cls', 'predictions')
  out += _dense(head + ('transform', 'dense'), 'cls.predictions.transform.dense',
                head=True)
  out += _ln(head + ('transform', 'LayerNorm'), 'cls.predictions.transform.LayerNorm',
             head=True)
  out.append(Entry(head + ('bias',), 'cls.predictions.bias', head=True))
  if not cfg.tie_word_embeddings:
    out.append(Entry(head + ('decoder', 'kernel'), 'cls.predictions.decoder.weight',
                     1, head=True))
  return out


def distilbert_entries(cfg: BertConfig) -> list[Entry]:
  """`DistilBertForMaskedLM` names: `distilbert.` prefixes the encoder; the head
  (`vocab_transform`, `vocab_layer_norm`, `vocab_projector`) sits at the root."""
  if cfg.type_vocab_size:
    raise ValueError('the DistilBERT layout has no token-type embeddings')
  emb = ('embeddings',)
  out = [Entry(emb + ('word_embeddings', 'embedding'), 'embeddings.word_embeddings.weight'),
         Entry(emb + ('position_embeddings', 'embedding'),
               'embeddings.position_embeddings.weight')]
  out += _ln(emb + ('LayerNorm',), 'embeddings.LayerNorm')
  for i in range(cfg.num_layers):
    p = f'transformer.layer.{i}.'
    out += _layer(i, p + 'attention.q_lin', p + 'attention.k_lin',
                  p + 'attention.v_lin', p + 'attention.out_lin',
                  p + 'sa_layer_norm', p + 'ffn.lin1', p + 'ffn.lin2',
                  p + 'output_layer_norm')
  head = ('cls', 'predictions')
  out += _dense(head + ('transform', 'dense'), 'vocab_transform', head=True)
  out += _ln(head + ('transform', 'LayerNorm'), 'vocab_layer_norm', head=True)
  out.append(Entry(head + ('bias',), 'vocab_projector.bias', head=True))
  if not cfg.tie_word_embeddings:
    out.append(Entry(head + ('decoder', 'kernel'), 'vocab_projector.weight', 1,
                     head=True))
  return out


def roberta_entries(cfg: BertConfig) -> list[Entry]:
  """`RobertaForMaskedLM` (and `XLMRobertaForMaskedLM`) names: BERT's encoder
  under `roberta.`, the head `lm_head.` (dense, layer_norm, bias, decoder)."""
  out = _bert_encoder(cfg)
  head = ('cls', 'predictions')
  out += _dense(head + ('transform', 'dense'), 'lm_head.dense', head=True)
  out += _ln(head + ('transform', 'LayerNorm'), 'lm_head.layer_norm', head=True)
  out.append(Entry(head + ('bias',), 'lm_head.bias', head=True))
  if not cfg.tie_word_embeddings:
    out.append(Entry(head + ('decoder', 'kernel'), 'lm_head.decoder.weight', 1,
                     head=True))
  return out


def entries(layout: str, cfg: BertConfig) -> list[Entry]:
  if layout == 'bert':
    return bert_entries(cfg)
  if layout == 'distilbert':
    return distilbert_entries(cfg)
  if layout in ('roberta', 'xlm-roberta'):
    return roberta_entries(cfg)
  raise ValueError(f'unknown layout {layout!r}')


# The encoder's prefix in checkpoints of a model with a head.
PREFIX = {'bert': 'bert.', 'distilbert': 'distilbert.', 'roberta': 'roberta.',
          'xlm-roberta': 'roberta.'}
# Where a head's names start (they sit at the checkpoint's root, unprefixed).
HEAD_ROOTS = ('cls.', 'vocab_', 'lm_head.')


def hf_shape(entry: Entry, ours_shape: tuple[int, ...]) -> tuple[int, ...]:
  """The PyTorch shape of the tensor behind `entry`, given our array's shape."""
  if entry.split is None:
    if entry.ours[-1] == 'embedding':
      return tuple(ours_shape)
    return (math.prod(ours_shape),)
  k = entry.split
  return (math.prod(ours_shape[k:]), math.prod(ours_shape[:k]))


def to_ours(entry: Entry, array: np.ndarray, ours_shape) -> np.ndarray:
  if entry.split is None:
    return array.reshape(ours_shape)
  return np.ascontiguousarray(array.T).reshape(ours_shape)


def to_hf(entry: Entry, array: np.ndarray) -> np.ndarray:
  shape = hf_shape(entry, array.shape)
  if entry.split is None:
    return np.ascontiguousarray(array.reshape(shape))
  return np.ascontiguousarray(array.reshape(shape[::-1]).T)


# ----------------------------------------------------------------------------
# Sequence-classification heads (`*ForSequenceClassification`), named as HF
# names them at the checkpoint's root. Our head tree is `glue.heads`'s: BERT's
# pooler and `classifier`; DistilBERT's `pre_classifier` and `classifier`;
# RoBERTa's (and XLM-R's) `dense` and `out_proj` (HF's `classifier.dense`,
# `classifier.out_proj`).

CLASSIFIER_ARCHITECTURE = {
    'bert': 'BertForSequenceClassification',
    'distilbert': 'DistilBertForSequenceClassification',
    'roberta': 'RobertaForSequenceClassification',
    'xlm-roberta': 'XLMRobertaForSequenceClassification'}


def classifier_entries(layout: str) -> list[Entry]:
  """The head's tensors for `layout`, paths inside our head tree. BERT's
  pooler sits inside the encoder (`bert.pooler.dense`); it is given here
  with its prefix."""
  if layout == 'bert':
    return (_dense(('pooler', 'dense'), 'bert.pooler.dense')
            + _dense(('classifier',), 'classifier'))
  if layout == 'distilbert':
    return (_dense(('pre_classifier',), 'pre_classifier')
            + _dense(('classifier',), 'classifier'))
  if layout in ('roberta', 'xlm-roberta'):
    return (_dense(('dense',), 'classifier.dense')
            + _dense(('out_proj',), 'classifier.out_proj'))
  raise ValueError(f'unknown layout {layout!r}')


def head_layout(head: dict) -> str:
  """Which layout family a head tree was made for: 'bert' (pooler),
  'distilbert' (pre_classifier) or 'roberta' (dense/out_proj)."""
  if 'out_proj' in head:
    return 'roberta'
  return 'bert' if 'pooler' in head else 'distilbert'
