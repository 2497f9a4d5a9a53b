"""Hugging Face `config.json` <-> `BertConfig`: one table per layout, read both ways.

Layouts: `bert` (BertForMaskedLM; multilingual BERT too), `distilbert`,
`roberta` and `xlm-roberta` (RobertaForMaskedLM, XLMRobertaForMaskedLM: BERT's
keys, one token type, positions offset by the padding index).

Each row is (HF key, our `BertConfig` field, the value when HF's file omits
it); REQUIRED marks a key a complete config must have. `REQUIRES` holds HF
keys whose value we only support one way (a file with another value is
refused on import; export writes that value), and `FIXED` our fields that a
layout pins (HF's DistilBERT has no token types and a fixed LayerNorm eps).
"""

from __future__ import annotations

from jaxdistil.convert.hf_files import ConvertError
from jaxdistil.models import config as model_config
from jaxdistil.models.config import BertConfig, default_layout

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
        ('pad_token_id', 'pad_token_id', 0),
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
        ('pad_token_id', 'pad_token_id', 0),
    ),
}
# RoBERTa's config.json is BERT's, but for the padding index (which moves the
# positions) and one token type; XLM-RoBERTa's is RoBERTa's.
FIELDS['roberta'] = tuple(
    {'type_vocab_size': ('type_vocab_size', 'type_vocab_size', 1),
     'pad_token_id': ('pad_token_id', 'pad_token_id', 1)}.get(row[0], row)
    for row in FIELDS['bert'])
FIELDS['xlm-roberta'] = FIELDS['roberta']


# HF key: (the one value supported, what the refusal says is supported)
REQUIRES = {
    'bert': {'position_embedding_type': ('absolute', 'absolute position embeddings'),
             'is_decoder': (False, 'bidirectional (is_decoder=false) models')},
    'distilbert': {'sinusoidal_pos_embds': (False, 'learned position embeddings')},
}
REQUIRES['roberta'] = REQUIRES['xlm-roberta'] = REQUIRES['bert']

FIXED = {'bert': {}, 'distilbert': {'type_vocab_size': 0, 'layer_norm_eps': 1e-12},
         'roberta': {}, 'xlm-roberta': {}}
# The family (`BertConfig.family`) each layout holds.
FAMILY = {'bert': 'bert', 'distilbert': 'bert', 'roberta': 'roberta',
          'xlm-roberta': 'xlm-roberta'}
# Rows of zeros written for a model without token types (a student).
TOKEN_TYPES = {'bert': 2, 'roberta': 1, 'xlm-roberta': 1}

ARCHITECTURE = {'bert': 'BertForMaskedLM', 'distilbert': 'DistilBertForMaskedLM',
                'roberta': 'RobertaForMaskedLM',
                'xlm-roberta': 'XLMRobertaForMaskedLM'}
# Activations HF's own model code accepts for each layout.
ACTIVATIONS = {'bert': model_config.ACTIVATIONS, 'distilbert': ('gelu', 'relu'),
               'roberta': model_config.ACTIVATIONS,
               'xlm-roberta': model_config.ACTIVATIONS}
# Architectures people ask about that are not BERT-shaped encoders, and why.
UNSUPPORTED = {
    'electra': 'ELECTRA (a discriminator; its generator head is not an MLM teacher head)',
    'deberta': 'DeBERTa (disentangled relative attention)',
    'deberta-v2': 'DeBERTa-v2/v3 (disentangled relative attention)',
    'albert': 'ALBERT (factorised embeddings, layers shared)',
    'gpt2': 'GPT-2 / DistilGPT2 (a causal decoder)',
}
SUPPORTED = ('BERT, DistilBERT, multilingual BERT, RoBERTa and XLM-RoBERTa '
             'masked-LM checkpoints')


def to_ours(hf: dict, path: str = 'config.json') -> tuple[str, BertConfig]:
  """(layout, BertConfig) from an HF config.json dict; other architectures refused."""
  layout = hf.get('model_type')
  if layout not in FIELDS:
    arch = ', '.join(hf.get('architectures') or []) or layout
    why = UNSUPPORTED.get(layout)
    raise ConvertError(f'{path} describes a {arch} model (model_type={layout!r})'
                       + (f', {why}' if why else '')
                       + f': not supported; supported are {SUPPORTED}')
  for key, (value, what) in REQUIRES[layout].items():
    if hf.get(key, value) != value:
      raise ConvertError(f'{path}: {key}={hf[key]!r} is not supported; only {what} '
                         f'are')
  # `BertConfig.layout` is the dropout sites: RoBERTa's are BERT's.
  fields = dict(FIXED[layout], layout='distilbert' if layout == 'distilbert' else 'bert',
                family=FAMILY[layout])
  for key, ours, default in FIELDS[layout]:
    if key not in hf and default is REQUIRED:
      raise ConvertError(f'{path} lacks "{key}": it is not a complete '
                         f'{ARCHITECTURE[layout]} config')
    fields[ours] = default if hf.get(key) is None else hf[key]
  cfg = BertConfig(**fields)
  if cfg.hidden_act not in ACTIVATIONS[layout]:
    raise ConvertError(f'{path}: activation {cfg.hidden_act!r} is not supported '
                       f'(supported: {", ".join(ACTIVATIONS[layout])})')
  if cfg.hidden_size % cfg.num_heads:
    raise ConvertError(f'{path}: hidden size {cfg.hidden_size} is not divisible by '
                       f'{cfg.num_heads} heads')
  return layout, cfg


def to_hf(cfg: BertConfig, layout: str, pad_token_id: int | None = None) -> dict:
  """The config.json fields for `cfg` written as `layout`; a model the layout
  cannot hold is refused (one line naming the layout that can).
  `pad_token_id` (default `cfg.pad_token_id`) is written as the padding id."""
  if layout not in FIELDS:
    raise ConvertError(f'unknown layout {layout!r}: use one of {", ".join(FIELDS)}')
  if FAMILY[layout] != cfg.family:
    raise ConvertError(
        f'a {cfg.family} model cannot be written as {ARCHITECTURE[layout]} '
        f'({"its positions start after the padding index" if cfg.family != "bert" else "it has no padding offset in its positions"}): '
        f'export it with --layout={default_layout(cfg)}')
  if TOKEN_TYPES.get(layout) and not cfg.type_vocab_size:
    # written as zeros: they add nothing
    cfg = cfg.replace(type_vocab_size=TOKEN_TYPES[layout])
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
  out.update(model_type=layout, architectures=[ARCHITECTURE[layout]],
             pad_token_id=cfg.pad_token_id if pad_token_id is None else pad_token_id)
  return out
