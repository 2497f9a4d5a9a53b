"""`BertConfig`: the shape and behaviour of one BERT encoder, and the names
its fields take. Plain Python (no jax, no flax), so that config checks,
conversion tables and model descriptions can use it without the model."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Shape and behaviour of one BERT encoder (hashable: it is a static jit argument)."""
  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  # 0 means no token-type embeddings (the DistilBERT layout).
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  initializer_range: float = 0.02
  # The MLP's and the MLM transform's activation, named as in HF configs:
  # 'gelu' (exact, erf), 'gelu_new' / 'gelu_pytorch_tanh' (tanh approximation), 'relu'.
  hidden_act: str = 'gelu'
  # True: the MLM decoder is the word-embedding matrix (BERT's and DistilBERT's
  # default); False: it has its own `cls/predictions/decoder/kernel`.
  tie_word_embeddings: bool = True
  # Whose dropout sites the encoder has: 'bert' (embeddings, attention
  # probabilities, after the attention output projection, after the FFN) or
  # 'distilbert' (DistilBERT's TransformerBlock: the same less the one after the
  # attention output projection). Parameters are the same either way.
  layout: str = 'bert'
  # Compute dtype; parameters are always stored in float32.
  dtype: str = 'float32'
  # The checkpoint family, for what it changes in the computation: 'bert'
  # (BERT, DistilBERT, multilingual BERT) or 'roberta' / 'xlm-roberta', whose
  # positions start after the padding index (see `position_offset`) and whose
  # MLM transform is always the exact GELU.
  family: str = 'bert'
  # The padding token's id: RoBERTa's padding takes position `pad_token_id`.
  pad_token_id: int = 0
  # The attention kernel, as `models.attention.resolve` chose it: 'xla',
  # 'splash' (Pallas, TPU) or 'cudnn' (GPU); `pallas_interpret` runs Pallas
  # kernels in interpret mode (tests on a CPU).
  attention: str = 'xla'
  pallas_interpret: bool = False
  # What each layer keeps for the backward pass: 'none' (everything), 'dots'
  # (the matmul outputs; the rest is recomputed) or 'full' (only the layer's
  # input: the whole layer is recomputed).
  remat: str = 'none'
  # One [embed, 3, heads, kv] projection `qkv` per layer in place of `query`,
  # `key` and `value` (one matmul where three would run): what inference
  # runs (`inference.prepare` concatenates the kernels once). Checkpoints and
  # training keep the three, under their HF names.
  fused_qkv: bool = False

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def position_offset(self) -> int:
    """What is added to a token's position within its sequence: 0 for BERT;
    `pad_token_id + 1` for RoBERTa, as fairseq numbered them (padding itself
    takes position `pad_token_id`)."""
    return self.pad_token_id + 1 if self.family in ROBERTA_FAMILIES else 0

  def replace(self, **kw) -> 'BertConfig':
    return dataclasses.replace(self, **kw)


REMAT = ('none', 'dots', 'full')
ACTIVATIONS = ('gelu', 'gelu_new', 'gelu_pytorch_tanh', 'relu')
LAYOUTS = ('bert', 'distilbert')
FAMILIES = ('bert', 'roberta', 'xlm-roberta')
ROBERTA_FAMILIES = ('roberta', 'xlm-roberta')


def default_layout(cfg: BertConfig) -> str:
  """The HF layout a model is written as by default: its family's for RoBERTa
  and XLM-RoBERTa; for BERT, DistilBERT's when it has no token types (every
  student), BERT's otherwise."""
  if cfg.family != 'bert':
    return cfg.family
  return 'distilbert' if not cfg.type_vocab_size else 'bert'
