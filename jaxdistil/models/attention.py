"""Bidirectional attention over padded or packed rows, three ways.

`model.attention` (BertConfig.attention) picks the kernel:

- 'xla': einsum, softmax, einsum. Materialises the [batch, heads, L, L] float32
  scores; the only one with attention-probability dropout. Runs everywhere.
- 'splash': Pallas splash attention (TPU), bidirectional (`FullMask`) with the
  rows' segment ids: a packed row's sequences attend only within themselves,
  and an unpacked row's padding is segment 0, apart from its real tokens. No
  [L, L] scores are kept: the memory of attention becomes linear in L.
- 'cudnn': `jax.nn.dot_product_attention(implementation='cudnn')` (NVIDIA GPU,
  bfloat16 or float16, head dim <= 128 and a multiple of 8). Padded rows pass
  as sequence lengths, cuDNN's own padding mask; packed rows as a boolean
  same-segment mask, which JAX hands to cuDNN as a dense [B, 1, L, L] bias.
- 'auto': splash on a TPU, cuDNN on a GPU where its constraints hold, XLA
  otherwise; a model whose attention dropout is on (the student, in the
  reference recipe) keeps XLA, since neither kernel has dropout.

`resolve` turns the configured choice into the kernel a model runs, and names
in one line what to use instead where a choice cannot run. All three give the
same outputs at real (non-padding) positions, and the same gradients; at
padding positions they differ (XLA lets padding attend to the real tokens,
the kernels to the other padding), and those are never read.

Which keys a query may see, for the XLA path, is `attention_bias_of` (padding,
or the block diagonal of a packed row); `position_ids_of` numbers a packed
row's tokens from 0 in each of its sequences.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ('xla', 'splash', 'cudnn', 'auto')
# Splash's block size along the sequence: rows must be a multiple of it.
SPLASH_BLOCK = 128


class AttentionError(ValueError):
  """An attention choice that cannot run here: one line naming the fix."""


def _backend() -> str:
  return jax.default_backend()


def cudnn_problem(head_dim: int, dtype: str, backend: str) -> str | None:
  """Why cuDNN's fused attention cannot run this model here, or None."""
  if backend != 'gpu':
    return f'it needs an NVIDIA GPU (this backend is {backend})'
  if dtype not in ('bfloat16', 'float16'):
    return f'it runs bfloat16 or float16, not {dtype} (set dtype=bfloat16)'
  if head_dim > 128 or head_dim % 8:
    return f'head dim {head_dim} is not a multiple of 8 up to 128'
  return None


def splash_problem(max_len: int | None, backend: str, interpret: bool) -> str | None:
  """Why splash attention cannot run here, or None."""
  if backend != 'tpu' and not interpret:
    return f'it is a TPU kernel (this backend is {backend})'
  if max_len is not None and max_len % SPLASH_BLOCK:
    return f'max_len={max_len} is not a multiple of {SPLASH_BLOCK}'
  return None


def resolve(kind: str, *, head_dim: int, dtype: str, dropout: float,
            max_len: int | None = None, backend: str | None = None,
            interpret: bool = False) -> tuple[str, str | None]:
  """(the kernel to run, a one-line notice when 'auto' fell back) for a model
  with `head_dim`, compute `dtype` and attention `dropout` (0 when it never
  trains, as the teacher). An explicit choice that cannot run raises
  AttentionError naming what to use instead."""
  backend = backend or _backend()
  if kind not in KINDS:
    raise AttentionError(f'model.attention={kind!r} is not one of '
                         f'{", ".join(KINDS)}: use auto')
  if kind == 'xla':
    return 'xla', None
  no_dropout = (f'it has no attention dropout, and this model uses '
                f'{dropout} (set its attention_dropout to 0)') if dropout else None
  problems = {   # why each kernel cannot run this model here, or None
      'splash': lambda: splash_problem(max_len, backend, interpret) or no_dropout,
      'cudnn': lambda: cudnn_problem(head_dim, dtype, backend) or no_dropout}
  if kind != 'auto':
    problem = problems[kind]()
    if problem:
      raise AttentionError(f"model.attention='{kind}' cannot run: {problem}; "
                           f"use 'xla' or 'auto'")
    return kind, None
  kernel = {'tpu': 'splash', 'gpu': 'cudnn'}.get(backend)
  if kernel is None:
    return 'xla', None
  problem = problems[kernel]()
  if not problem:
    return kernel, None
  name = {'splash': 'splash', 'cudnn': 'cuDNN'}[kernel]
  return 'xla', f'attention: {name} not used ({problem}); XLA attention'


def attention_bias_of(attention_mask, segment_ids=None):
  """The additive attention bias, float32, broadcastable to [B, heads, Lq, Lk].

  Unpacked rows (`segment_ids` None): padding keys get a large negative score,
  as [B, 1, 1, L]. Packed rows: a query may attend to a key only when both
  belong to the same sequence (equal, nonzero segment ids), as [B, 1, L, L]:
  block-diagonal attention, so each sequence sees nothing of its neighbours.
  A padding query (segment 0) attends nowhere real; its output is never used.
  """
  neg = jnp.finfo(jnp.float32).min
  if segment_ids is None:
    return jnp.where(attention_mask[:, None, None, :] > 0, 0.0,
                     neg).astype(jnp.float32)
  same = ((segment_ids[:, :, None] == segment_ids[:, None, :])
          & (segment_ids[:, None, :] > 0))
  return jnp.where(same[:, None], 0.0, neg).astype(jnp.float32)


def position_ids_of(segment_ids):
  """Positions that restart at 0 in each sequence of a packed row (padding,
  segment 0, gets positions too; they are never used)."""
  length = segment_ids.shape[1]
  index = jnp.arange(length)[None]
  starts = jnp.concatenate([jnp.ones_like(segment_ids[:, :1], bool),
                            segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1)
  start_index = jax.lax.cummax(jnp.where(starts, index, 0), axis=1)
  return (index - start_index).astype(jnp.int32)


def segments_of(attention_mask, segment_ids=None):
  """[B, L] int32 segment ids: a packed row's own, else the padding mask
  (1 for real tokens, 0 for padding)."""
  if segment_ids is not None:
    return segment_ids.astype(jnp.int32)
  return (attention_mask > 0).astype(jnp.int32)


@functools.lru_cache(maxsize=None)
def _splash_kernel(heads: int, length: int, interpret: bool):
  from jax.experimental.pallas.ops.tpu.splash_attention import (
      splash_attention_kernel as kernel, splash_attention_mask as mask_lib)
  block = min(512, length)
  sizes = kernel.BlockSizes(
      block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
      block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block,
      block_kv_dq=block)
  mask = mask_lib.MultiHeadMask([mask_lib.FullMask((length, length))] * heads)
  return kernel.make_splash_mha(mask, block_sizes=sizes, head_shards=1,
                                q_seq_shards=1, interpret=interpret)


def _splash_local(q, k, v, segments, interpret: bool):
  """Splash on this device's rows: q, k, v [b, L, h, d] (q already scaled)."""
  from jax.experimental.pallas.ops.tpu.splash_attention import (
      splash_attention_kernel as kernel)
  _, length, heads, _ = q.shape
  run = _splash_kernel(heads, length, interpret)
  heads_first = lambda x: jnp.swapaxes(x, 1, 2)          # [b, h, L, d]
  out = jax.vmap(lambda q, k, v, s: run(q, k, v, segment_ids=kernel.SegmentIds(
      q=s, kv=s)))(heads_first(q), heads_first(k), heads_first(v), segments)
  return jnp.swapaxes(out, 1, 2)


def splash(q, k, v, segments, interpret: bool = False):
  """Splash attention, per device under the active mesh (`sharding`): the
  batch split as the activations are, heads split over `tensor`."""
  from jaxdistil import sharding
  local = functools.partial(_splash_local, interpret=interpret)
  active = sharding.active()
  if active is None:
    return local(q, k, v, segments)
  mesh, _ = active
  qkv = sharding.spec(q.shape, 'act_batch', 'act_length', 'act_heads', None)
  seg = sharding.spec(segments.shape, 'act_batch', 'act_length')
  return jax.shard_map(local, mesh=mesh, in_specs=(qkv, qkv, qkv, seg),
                       out_specs=qkv, check_vma=False)(q, k, v, segments)


def cudnn(q, k, v, segments, packed: bool):
  """cuDNN fused attention: q, k, v [B, L, h, d] (q already scaled)."""
  if packed:
    same = segments[:, None, :, None] == segments[:, None, None, :]
    return jax.nn.dot_product_attention(q, k, v, mask=same, scale=1.0,
                                        implementation='cudnn')
  lengths = segments.sum(axis=1).astype(jnp.int32)
  return jax.nn.dot_product_attention(
      q, k, v, scale=1.0, query_seq_lengths=lengths,
      key_value_seq_lengths=lengths, implementation='cudnn')


def reference(q, k, v, segments):
  """What the kernels compute, in plain jnp (tests): each query attends to the
  keys of its own segment, padding to padding."""
  same = segments[:, None, :, None] == segments[:, None, None, :]
  scores = jnp.einsum('bqhd,bkhd->bhqk', q, k, preferred_element_type=jnp.float32)
  scores = jnp.where(same, scores, np.finfo(np.float32).min)
  probs = jax.nn.softmax(scores, axis=-1)
  return jnp.einsum('bhqk,bkhd->bqhd', probs.astype(v.dtype), v)
