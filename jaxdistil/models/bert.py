"""One BERT encoder with a masked-LM head, for both the teacher and the student.

The teacher (BERT layout: token-type embeddings) and the student (DistilBERT layout:
no token types, no pooler, fewer layers) are two `BertConfig`s of this one code.
RoBERTa and XLM-RoBERTa are the same encoder (`family`): one token type, and
positions that start after the padding index.

Parameter names follow the Hugging Face PyTorch names so that conversion is a table:
`embeddings/word_embeddings/embedding` is `bert.embeddings.word_embeddings.weight`,
`encoder/layer_3/attention/self/query/kernel` is `bert.encoder.layer.3.attention.self.
query.weight` (transposed, heads split out), `cls/predictions/bias`
is `cls.predictions.bias`, and so on. Attention kernels keep heads as their own axis
(`[embed, heads, kv]`) so that tensor parallelism can split heads.

Every parameter carries logical axis names (`vocab`, `embed`, `heads`, `kv`, `mlp`,
`pos`, `type`); `jaxdistil.sharding` maps them to mesh axes.

The public surface is two pure functions over a plain params pytree:
`init(config, rng)` and `apply(config, params, input_ids, attention_mask, ...)`.

`BertConfig` lives in `models.config` (no flax), the counter-hash `Dropout`
in `models.dropout`, and the attention masks of padded and packed rows
(`attention_bias_of`, `position_ids_of`) in `models.attention`; all are
re-exported here.

Over 300 lines on purpose: the whole encoder in one file, as the Flax
examples keep a model: its modules, `init`/`apply`, the parameter names and
the logical axes of every parameter, which change together.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from flax import struct

from jaxdistil.models import attention as attention_lib
from jaxdistil.models.attention import attention_bias_of, position_ids_of
from jaxdistil.models.config import (ACTIVATIONS, FAMILIES, LAYOUTS, REMAT,
                                     ROBERTA_FAMILIES, BertConfig)
from jaxdistil.models.dropout import Dropout
from jaxdistil.sharding import constrain

__all__ = ['ACTIVATIONS', 'FAMILIES', 'LAYOUTS', 'REMAT', 'ROBERTA_FAMILIES',
           'AttentionInputs', 'BertConfig', 'BertOutput', 'Dropout',
           'activation', 'apply', 'attention_bias_of', 'init', 'logical_axes',
           'param_count', 'position_ids_of']


def activation(name: str):
  if name == 'gelu':
    return lambda x: nn.gelu(x, approximate=False)
  if name in ('gelu_new', 'gelu_pytorch_tanh'):
    return lambda x: nn.gelu(x, approximate=True)
  if name == 'relu':
    return nn.relu
  raise ValueError(f'hidden_act={name!r} is not supported: use one of {ACTIVATIONS}')


class BertOutput(NamedTuple):
  logits: jax.Array          # [batch, length, vocab], float32
  hidden_states: tuple       # num_layers + 1 arrays [batch, length, hidden]


def _init(cfg: BertConfig, axes):
  return nn.with_logical_partitioning(
      nn.initializers.normal(cfg.initializer_range), axes)


def _zeros(axes):
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def _ones(axes):
  return nn.with_logical_partitioning(nn.initializers.ones_init(), axes)


def _layer_norm(cfg: BertConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=jnp.float32,
                      param_dtype=jnp.float32, scale_init=_ones(('embed',)),
                      bias_init=_zeros(('embed',)), name=name)


def _dense(cfg: BertConfig, features, kernel_axes, bias_axes, name, axis=-1):
  return nn.DenseGeneral(
      features=features, axis=axis, dtype=jnp.dtype(cfg.dtype),
      param_dtype=jnp.float32, kernel_init=_init(cfg, kernel_axes),
      bias_init=_zeros(bias_axes), name=name)


class Embeddings(nn.Module):
  cfg: BertConfig

  def setup(self):
    cfg = self.cfg
    self.word_embeddings = nn.Embed(
        cfg.vocab_size, cfg.hidden_size, dtype=jnp.dtype(cfg.dtype),
        param_dtype=jnp.float32, embedding_init=_init(cfg, ('vocab', 'embed')))
    self.position_embeddings = nn.Embed(
        cfg.max_position_embeddings, cfg.hidden_size, dtype=jnp.dtype(cfg.dtype),
        param_dtype=jnp.float32, embedding_init=_init(cfg, ('pos', 'embed')))
    if cfg.type_vocab_size:
      self.token_type_embeddings = nn.Embed(
          cfg.type_vocab_size, cfg.hidden_size, dtype=jnp.dtype(cfg.dtype),
          param_dtype=jnp.float32, embedding_init=_init(cfg, ('type', 'embed')))
    self.LayerNorm = _layer_norm(cfg, 'LayerNorm')
    self.dropout = Dropout(cfg.hidden_dropout)

  def __call__(self, input_ids, token_type_ids, position_ids, deterministic):
    x = self._lookup(self.word_embeddings, input_ids, 'vocab')
    x = x + self._lookup(self.position_embeddings, position_ids)
    if self.cfg.type_vocab_size:
      x = x + self._lookup(self.token_type_embeddings, token_type_ids)
    x = constrain(x, 'act_batch', 'act_length', 'act_embed')
    # LayerNorm statistics in float32 whatever the compute dtype.
    x = self.LayerNorm(x.astype(jnp.float32)).astype(self.cfg.dtype)
    return self.dropout(x, deterministic=deterministic)

  def _lookup(self, embed: nn.Embed, ids, rows=None):
    # FSDP shards a table's hidden axis; gather it before the lookup (as for any
    # FSDP weight) so the lookup's output can follow the batch sharding.
    table = constrain(embed.embedding, rows, 'act_embed')
    return jnp.take(table, ids, axis=0).astype(self.cfg.dtype)

  def attend(self, x):
    """The decoder tied to the word embeddings: x @ E^T."""
    return self.word_embeddings.attend(x)


@struct.dataclass
class AttentionInputs:
  """What a layer's attention needs of the rows: the additive bias ('xla'), or
  the segment ids (the kernels; see `models.attention`)."""
  bias: jax.Array | None
  segments: jax.Array | None
  packed: bool = struct.field(pytree_node=False, default=False)


class SelfAttention(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, x, mask: AttentionInputs, deterministic):
    cfg = self.cfg
    heads = (cfg.num_heads, cfg.head_dim)
    qkv_axes = (('embed', 'heads', 'kv'), ('heads', 'kv'))
    act = ('act_batch', 'act_length', 'act_heads', None)
    if cfg.fused_qkv:
      qkv = _dense(cfg, (3,) + heads, ('embed', None, 'heads', 'kv'),
                   (None, 'heads', 'kv'), name='qkv')(x)
      q, k, v = (constrain(qkv[:, :, i], *act) for i in range(3))
    else:
      q = constrain(_dense(cfg, heads, *qkv_axes, name='query')(x), *act)
      k = constrain(_dense(cfg, heads, *qkv_axes, name='key')(x), *act)
      v = constrain(_dense(cfg, heads, *qkv_axes, name='value')(x), *act)
    q = q * jnp.asarray(cfg.head_dim ** -0.5, q.dtype)
    if cfg.attention == 'splash':
      return attention_lib.splash(q, k, v, mask.segments, cfg.pallas_interpret)
    if cfg.attention == 'cudnn':
      return attention_lib.cudnn(q, k, v, mask.segments, mask.packed)
    scores = jnp.einsum('bqhd,bkhd->bhqk', q, k,
                        preferred_element_type=jnp.float32)
    if q.dtype != jnp.float32:
      # Float32 scores for the softmax, but their gradient goes back into the
      # matmuls' dtype, so the backward's two score matmuls stay bfloat16.
      scores = _cotangent_as(scores, q.dtype)
    probs = jax.nn.softmax(scores + mask.bias, axis=-1)
    probs = Dropout(cfg.attention_dropout)(probs, deterministic=deterministic)
    return jnp.einsum('bhqk,bkhd->bqhd', probs.astype(v.dtype), v)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _cotangent_as(x, dtype):
  """The identity, whose cotangent is cast to `dtype`."""
  return x


_cotangent_as.defvjp(lambda x, dtype: (x, None),
                     lambda dtype, _, g: (g.astype(dtype),))


class ResidualOutput(nn.Module):
  """Project back to the hidden size, dropout, add the residual, LayerNorm.

  HF's `attention.output` (from the heads: input axes ('heads', 'kv')) and a
  layer's `output` (from the MLP: ('mlp',)) are both this.
  """
  cfg: BertConfig
  in_axes: tuple[str, ...]
  dropout: bool = True

  @nn.compact
  def __call__(self, h, residual, deterministic):
    cfg = self.cfg
    contract = tuple(range(-len(self.in_axes), 0))
    h = _dense(cfg, cfg.hidden_size, self.in_axes + ('embed',), ('embed',),
               name='dense', axis=contract)(h)
    if self.dropout:
      h = Dropout(cfg.hidden_dropout)(h, deterministic=deterministic)
    return _layer_norm(cfg, 'LayerNorm')(
        (h + residual).astype(jnp.float32)).astype(cfg.dtype)


class Attention(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, x, mask: AttentionInputs, deterministic):
    ctx = SelfAttention(self.cfg, name='self')(x, mask, deterministic)
    # DistilBERT has no dropout between `out_lin` and `sa_layer_norm`.
    return ResidualOutput(self.cfg, ('heads', 'kv'),
                          dropout=self.cfg.layout == 'bert', name='output')(
                              ctx, x, deterministic)


class Intermediate(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.cfg
    h = _dense(cfg, cfg.intermediate_size, ('embed', 'mlp'), ('mlp',),
               name='dense')(x)
    return constrain(activation(cfg.hidden_act)(h), 'act_batch', 'act_length',
                     'act_mlp')


class Layer(nn.Module):
  """A post-LayerNorm transformer block with HF BERT's submodule names."""
  cfg: BertConfig

  @nn.compact
  def __call__(self, x, mask: AttentionInputs, deterministic):
    x = Attention(self.cfg, name='attention')(x, mask, deterministic)
    h = Intermediate(self.cfg, name='intermediate')(x)
    x = ResidualOutput(self.cfg, ('mlp',), name='output')(h, x, deterministic)
    return constrain(x, 'act_batch', 'act_length', 'act_embed')


REMAT_POLICIES = {
    'dots': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    'full': jax.checkpoint_policies.nothing_saveable,
}


class Encoder(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, x, mask: AttentionInputs, deterministic):
    cfg = self.cfg
    if cfg.remat not in REMAT:
      raise ValueError(f'model.remat={cfg.remat!r} is not one of '
                       f'{", ".join(REMAT)}: use none, dots or full')
    layer = Layer
    if cfg.remat != 'none':
      # The same parameters under the same names; only what the backward pass
      # finds saved changes. `deterministic` is static (argument 3: self first).
      layer = nn.remat(Layer, policy=REMAT_POLICIES[cfg.remat],
                       static_argnums=(3,))
    hidden_states = [x]
    for i in range(cfg.num_layers):
      x = layer(cfg, name=f'layer_{i}')(x, mask, deterministic)
      hidden_states.append(x)
    return tuple(hidden_states)


class Transform(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.cfg
    h = _dense(cfg, cfg.hidden_size, ('embed', 'mlp_head'), ('mlp_head',),
               name='dense')(x)
    # RoBERTa's LM head applies the exact GELU whatever `hidden_act` says.
    h = activation('gelu' if cfg.family in ROBERTA_FAMILIES else cfg.hidden_act)(h)
    return _layer_norm(cfg, 'LayerNorm')(h.astype(jnp.float32)).astype(cfg.dtype)


class Predictions(nn.Module):
  """MLM head: transform (dense, GELU, LayerNorm), a decoder (tied to the word
  embeddings unless the config unties it), and its own output bias."""
  cfg: BertConfig

  @nn.compact
  def __call__(self, x, embeddings: Embeddings):
    cfg = self.cfg
    h = Transform(cfg, name='transform')(x)
    if cfg.tie_word_embeddings:
      logits = embeddings.attend(h)
    else:
      logits = nn.DenseGeneral(
          cfg.vocab_size, use_bias=False, dtype=jnp.dtype(cfg.dtype),
          param_dtype=jnp.float32, kernel_init=_init(cfg, ('embed', 'vocab')),
          name='decoder')(h)
    logits = logits.astype(jnp.float32)
    logits = constrain(logits, 'act_batch', 'act_length', 'act_vocab')
    bias = self.param('bias', _zeros(('vocab',)), (self.cfg.vocab_size,),
                      jnp.float32)
    return logits + bias


class Cls(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, x, embeddings):
    return Predictions(self.cfg, name='predictions')(x, embeddings)


class MaskedLM(nn.Module):
  """embeddings -> encoder -> cls/predictions, named like HF's BertForMaskedLM."""
  cfg: BertConfig

  @nn.compact
  def __call__(self, input_ids, attention_mask, token_type_ids, position_ids,
               segment_ids, deterministic):
    cfg = self.cfg
    if cfg.position_offset:
      # RoBERTa: real tokens are numbered from pad_token_id + 1, padding takes
      # pad_token_id. HF decides what is padding by `input_ids != pad`; here the
      # attention mask decides, which is the same on padded rows and keeps a
      # random <pad> that masking put inside a sequence from moving positions.
      position_ids = jnp.where(attention_mask > 0, position_ids + cfg.position_offset,
                               cfg.pad_token_id)
    embeddings = Embeddings(cfg, name='embeddings')
    x = embeddings(input_ids, token_type_ids, position_ids, deterministic)
    if cfg.attention == 'xla':
      mask = AttentionInputs(attention_bias_of(attention_mask, segment_ids), None)
    else:
      mask = AttentionInputs(None, attention_lib.segments_of(attention_mask, segment_ids),
                             packed=segment_ids is not None)
    hidden_states = Encoder(self.cfg, name='encoder')(x, mask, deterministic)
    logits = Cls(self.cfg, name='cls')(hidden_states[-1], embeddings)
    return BertOutput(logits, hidden_states)


def _boxed_init(cfg: BertConfig, rng):
  # The parameters do not depend on the kernel or remat; a 1-token row cannot
  # run splash's 128-token blocks.
  cfg = cfg.replace(attention='xla', remat='none')
  ids = jnp.zeros((1, 1), jnp.int32)
  return MaskedLM(cfg).init(rng, ids, jnp.ones_like(ids), jnp.zeros_like(ids),
                            jnp.zeros_like(ids), None,
                            deterministic=True)['params']


def init(cfg: BertConfig, rng: jax.Array) -> dict:
  """Random parameters (BERT's N(0, 0.02) init), as a plain nested dict."""
  return nn.meta.unbox(_boxed_init(cfg, rng))


def logical_axes(cfg: BertConfig) -> dict:
  """The logical axis names of every parameter, as a tree of PartitionSpecs."""
  boxed = jax.eval_shape(lambda: _boxed_init(cfg, jax.random.key(0)))
  return nn.get_partition_spec(boxed)


def apply(cfg: BertConfig, params: dict, input_ids, attention_mask,
          token_type_ids=None, dropout_rng=None, *, segment_ids=None,
          position_ids=None) -> BertOutput:
  """The model as a pure function: logits and the per-layer hidden states.

  Dropout is on only when `dropout_rng` is given (and the config's rates > 0).
  `token_type_ids` defaults to all zeros and is ignored by a DistilBERT layout.

  Packed rows (several sequences in one row) pass `segment_ids` [B, L] (0 for
  padding, then 1, 2, ... per sequence): attention is then block-diagonal, and
  `position_ids` default to positions restarting at 0 in each sequence. Each
  sequence's logits and hidden states equal those of the sequence run alone.
  """
  if token_type_ids is None:
    token_type_ids = jnp.zeros_like(input_ids)
  if position_ids is None:
    position_ids = (jnp.broadcast_to(jnp.arange(input_ids.shape[1]),
                                     input_ids.shape)
                    if segment_ids is None else position_ids_of(segment_ids))
  deterministic = dropout_rng is None
  rngs = None if deterministic else {'dropout': dropout_rng}
  return MaskedLM(cfg).apply({'params': params}, input_ids, attention_mask,
                             token_type_ids, position_ids, segment_ids,
                             deterministic, rngs=rngs)


def param_count(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))
