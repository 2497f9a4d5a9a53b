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


# Each layout's HF names, as tables: its encoder layers' prefix and the eight
# parts of a layer (query, key, value, attention output, its LayerNorm, FFN in,
# FFN out, its LayerNorm); its masked-LM head (transform dense, transform
# LayerNorm, output bias, untied decoder); its sequence classifier's head (two
# dense layers: (our path, HF name) each, the first BERT's pooler, prefixed).
LAYERS = {
    'bert': ('encoder.layer', (
        'attention.self.query', 'attention.self.key', 'attention.self.value',
        'attention.output.dense', 'attention.output.LayerNorm',
        'intermediate.dense', 'output.dense', 'output.LayerNorm')),
    'distilbert': ('transformer.layer', (
        'attention.q_lin', 'attention.k_lin', 'attention.v_lin',
        'attention.out_lin', 'sa_layer_norm', 'ffn.lin1', 'ffn.lin2',
        'output_layer_norm')),
}
MLM_HEAD = {
    'bert': ('cls.predictions.transform.dense',
             'cls.predictions.transform.LayerNorm', 'cls.predictions.bias',
             'cls.predictions.decoder.weight'),
    'distilbert': ('vocab_transform', 'vocab_layer_norm', 'vocab_projector.bias',
                   'vocab_projector.weight'),
    'roberta': ('lm_head.dense', 'lm_head.layer_norm', 'lm_head.bias',
                'lm_head.decoder.weight'),
}
CLASSIFIER_HEAD = {
    'bert': ((('pooler', 'dense'), 'bert.pooler.dense'),
             (('classifier',), 'classifier')),
    'distilbert': ((('pre_classifier',), 'pre_classifier'),
                   (('classifier',), 'classifier')),
    'roberta': ((('dense',), 'classifier.dense'),
                (('out_proj',), 'classifier.out_proj')),
}
# RoBERTa and XLM-RoBERTa are BERT's encoder, with RoBERTa's heads.
ENCODER = {'bert': 'bert', 'distilbert': 'distilbert', 'roberta': 'bert',
           'xlm-roberta': 'bert'}
HEADS = {'bert': 'bert', 'distilbert': 'distilbert', 'roberta': 'roberta',
         'xlm-roberta': 'roberta'}


def _layer(i: int, prefix: str, parts) -> list[Entry]:
  p = ('encoder', f'layer_{i}')
  att = p + ('attention',)
  q, k, v, o, ln1, ffn_in, ffn_out, ln2 = (f'{prefix}.{i}.{x}' for x in parts)
  return (_dense(att + ('self', 'query'), q) + _dense(att + ('self', 'key'), k) +
          _dense(att + ('self', 'value'), v) +
          _dense(att + ('output', 'dense'), o, split=2) +
          _ln(att + ('output', 'LayerNorm'), ln1) +
          _dense(p + ('intermediate', 'dense'), ffn_in) +
          _dense(p + ('output', 'dense'), ffn_out) +
          _ln(p + ('output', 'LayerNorm'), ln2))


def _encoder(cfg: BertConfig, encoder: str) -> list[Entry]:
  """The embeddings and every layer, in `encoder`'s names ('bert' or
  'distilbert'); token types when the config has them."""
  emb = ('embeddings',)
  out = [Entry(emb + ('word_embeddings', 'embedding'), 'embeddings.word_embeddings.weight'),
         Entry(emb + ('position_embeddings', 'embedding'),
               'embeddings.position_embeddings.weight')]
  if cfg.type_vocab_size:
    out.append(Entry(emb + ('token_type_embeddings', 'embedding'),
                     'embeddings.token_type_embeddings.weight'))
  out += _ln(emb + ('LayerNorm',), 'embeddings.LayerNorm')
  prefix, parts = LAYERS[encoder]
  for i in range(cfg.num_layers):
    out += _layer(i, prefix, parts)
  return out


def _mlm_head(cfg: BertConfig, heads: str) -> list[Entry]:
  """Our `cls/predictions` under `heads`' names ('bert', 'distilbert' or
  'roberta'), its decoder only when untied."""
  dense, norm, bias, decoder = MLM_HEAD[heads]
  ours = ('cls', 'predictions')
  out = (_dense(ours + ('transform', 'dense'), dense, head=True)
         + _ln(ours + ('transform', 'LayerNorm'), norm, head=True)
         + [Entry(ours + ('bias',), bias, head=True)])
  if not cfg.tie_word_embeddings:
    out.append(Entry(ours + ('decoder', 'kernel'), decoder, 1, head=True))
  return out


def bert_entries(cfg: BertConfig) -> list[Entry]:
  """`BertForMaskedLM` names: `bert.` is the encoder's prefix, `cls.` the head's."""
  return _encoder(cfg, 'bert') + _mlm_head(cfg, 'bert')


def distilbert_entries(cfg: BertConfig) -> list[Entry]:
  """`DistilBertForMaskedLM` names: `distilbert.` prefixes the encoder; the head
  (`vocab_transform`, `vocab_layer_norm`, `vocab_projector`) sits at the root."""
  if cfg.type_vocab_size:
    raise ValueError('the DistilBERT layout has no token-type embeddings')
  return _encoder(cfg, 'distilbert') + _mlm_head(cfg, 'distilbert')


def roberta_entries(cfg: BertConfig) -> list[Entry]:
  """`RobertaForMaskedLM` (and `XLMRobertaForMaskedLM`) names: BERT's encoder
  under `roberta.`, the head `lm_head.` (dense, layer_norm, bias, decoder)."""
  return _encoder(cfg, 'bert') + _mlm_head(cfg, 'roberta')


def entries(layout: str, cfg: BertConfig) -> list[Entry]:
  """Every tensor of a masked-LM model of `layout`."""
  if layout not in HEADS:
    raise ValueError(f'unknown layout {layout!r}')
  if layout == 'distilbert':
    return distilbert_entries(cfg)
  return _encoder(cfg, ENCODER[layout]) + _mlm_head(cfg, HEADS[layout])


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
  if layout not in HEADS:
    raise ValueError(f'unknown layout {layout!r}')
  return [e for ours, hf in CLASSIFIER_HEAD[HEADS[layout]] for e in _dense(ours, hf)]


def head_layout(head: dict) -> str:
  """Which layout family a head tree was made for: 'bert' (pooler),
  'distilbert' (pre_classifier) or 'roberta' (dense/out_proj)."""
  if 'out_proj' in head:
    return 'roberta'
  return 'bert' if 'pooler' in head else 'distilbert'
