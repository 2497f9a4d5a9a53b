"""Hugging Face `config.json` <-> `BertConfig`: one table per layout, read both ways.

Each row is (HF key, our `BertConfig` field, the value when HF's file omits
it); REQUIRED marks a key a complete config must have. `REQUIRES` holds HF
keys whose value we only support one way (a file with another value is
refused on import; export writes that value), and `FIXED` our fields that a
layout pins (HF's DistilBERT has no token types and a fixed LayerNorm eps).
"""

from __future__ import annotations

from jaxdistil.convert.hf_files import ConvertError
from jaxdistil.models import bert
from jaxdistil.models.bert import BertConfig

REQUIRED = object()

FIELDS = {
    'bert': (
        ('vocab_size', 'vocab_size', REQUIRED),
        ('hidden_size', 'hidden_size', REQUIRED),
        ('num_hidden_layers', 'num_layers', REQUIRED),
        ('num_attention_heads', 'num_heads', REQUIRED),
        ('intermediate_size', 'intermediate_size', REQUIRED),
        ('max_position_embeddings', 'max_position_embeddings', REQUIRED),
        ('type_vocab_size', 'type_vocab_size', 2),
        ('layer_norm_eps', 'layer_norm_eps', 1e-12),
        ('hidden_dropout_prob', 'hidden_dropout', 0.1),
        ('attention_probs_dropout_prob', 'attention_dropout', 0.1),
        ('initializer_range', 'initializer_range', 0.02),
        ('hidden_act', 'hidden_act', 'gelu'),
        ('tie_word_embeddings', 'tie_word_embeddings', True),
    ),
    'distilbert': (
        ('vocab_size', 'vocab_size', REQUIRED),
        ('dim', 'hidden_size', REQUIRED),
        ('n_layers', 'num_layers', REQUIRED),
        ('n_heads', 'num_heads', REQUIRED),
        ('hidden_dim', 'intermediate_size', REQUIRED),
        ('max_position_embeddings', 'max_position_embeddings', REQUIRED),
        ('dropout', 'hidden_dropout', 0.1),
        ('attention_dropout', 'attention_dropout', 0.1),
        ('initializer_range', 'initializer_range', 0.02),
        ('activation', 'hidden_act', 'gelu'),
        ('tie_word_embeddings', 'tie_word_embeddings', True),
    ),
}

# HF key: (the one value supported, what the refusal says is supported)
REQUIRES = {
    'bert': {'position_embedding_type': ('absolute', 'absolute position embeddings'),
             'is_decoder': (False, 'bidirectional (is_decoder=false) models')},
    'distilbert': {'sinusoidal_pos_embds': (False, 'learned position embeddings')},
}

FIXED = {'bert': {}, 'distilbert': {'type_vocab_size': 0, 'layer_norm_eps': 1e-12}}

ARCHITECTURE = {'bert': 'BertForMaskedLM', 'distilbert': 'DistilBertForMaskedLM'}
# Activations HF's own model code accepts for each layout.
ACTIVATIONS = {'bert': bert.ACTIVATIONS, 'distilbert': ('gelu', 'relu')}


def to_ours(hf: dict, path: str = 'config.json') -> tuple[str, BertConfig]:
  """(layout, BertConfig) from an HF config.json dict; other architectures refused."""
  layout = hf.get('model_type')
  if layout not in FIELDS:
    arch = ', '.join(hf.get('architectures') or []) or layout
    raise ConvertError(f'{path} describes a {arch} model (model_type={layout!r}); '
                       f'only BERT and DistilBERT architectures can be imported')
  for key, (value, what) in REQUIRES[layout].items():
    if hf.get(key, value) != value:
      raise ConvertError(f'{path}: {key}={hf[key]!r} is not supported; only {what} '
                         f'are')
  fields = dict(FIXED[layout], layout=layout)
  for key, ours, default in FIELDS[layout]:
    if key not in hf and default is REQUIRED:
      raise ConvertError(f'{path} lacks "{key}": it is not a complete '
                         f'{ARCHITECTURE[layout]} config')
    fields[ours] = hf.get(key, default)
  cfg = BertConfig(**fields)
  if cfg.hidden_act not in ACTIVATIONS[layout]:
    raise ConvertError(f'{path}: activation {cfg.hidden_act!r} is not supported '
                       f'(supported: {", ".join(ACTIVATIONS[layout])})')
  if cfg.hidden_size % cfg.num_heads:
    raise ConvertError(f'{path}: hidden size {cfg.hidden_size} is not divisible by '
                       f'{cfg.num_heads} heads')
  return layout, cfg


def to_hf(cfg: BertConfig, layout: str, pad_token_id: int = 0) -> dict:
  """The config.json fields for `cfg` written as `layout`; a model the layout
  cannot hold is refused (one line naming the layout that can)."""
  if layout not in FIELDS:
    raise ConvertError(f'unknown layout {layout!r}: use distilbert or bert')
  if layout == 'bert' and not cfg.type_vocab_size:
    cfg = cfg.replace(type_vocab_size=2)   # written as zeros: they add nothing
  for field, value in FIXED[layout].items():
    if getattr(cfg, field) != value:
      what = ('token-type embeddings' if field == 'type_vocab_size'
              else f'{field}={getattr(cfg, field)}')
      raise ConvertError(f'a model with {what} cannot be written as '
                         f'{ARCHITECTURE[layout]} (it fixes {field}={value}): '
                         f'export it with --layout=bert')
  if cfg.hidden_act not in ACTIVATIONS[layout]:
    raise ConvertError(f'HF {ARCHITECTURE[layout]} supports '
                       f'{", ".join(ACTIVATIONS[layout])}, not {cfg.hidden_act!r}: '
                       f'export it with --layout=bert')
  out = {key: getattr(cfg, ours) for key, ours, _ in FIELDS[layout]}
  out.update({key: value for key, (value, _) in REQUIRES[layout].items()})
  out.update(model_type=layout, pad_token_id=pad_token_id,
             architectures=[ARCHITECTURE[layout]])
  return out
