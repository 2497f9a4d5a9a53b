"""Classifier inference: one jitted forward of the encoder and its head, run
over length-bucketed batches of rows taken in their order.

The forward is `bert.apply` (no dropout) and, when a head is given,
`glue.heads.head_apply` on the first token's last hidden state: [B, outputs]
float32 logits. Without a head it returns the first token's state [B, H]
(float32), so the encoder alone can be timed. The MLM head is never computed:
its output is unused, and XLA drops it under jit.

Batches hold consecutive rows (`plan`), in file order, each padded only to the
smallest bucket (`glue.batching.bucket_lengths`) that holds its longest row;
a short last batch is filled with copies of its first row, so every batch of a
bucket is one shape, compiled once (`compile_buckets`). Padding is masked, so
the logits equal those of full-length rows (the test holds them to 1e-5).

`prepare` sets the compute dtype: with bfloat16 the matrices (kernels and
embedding tables) are cast once, so no step converts float32 weights again;
biases and LayerNorm stay float32, and the head computes in float32.
"""

from __future__ import annotations

import functools
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistil.glue import heads
from jaxdistil.glue.batching import Batch, bucket_lengths, bucket_of
from jaxdistil.models import attention as attention_lib
from jaxdistil.models import bert

DTYPES = ('float32', 'bfloat16')
# Serving pads a batch to the next multiple of 8 tokens: on a CPU at batch 1
# the default training buckets (8, 12, 16, 24, ...) cost about 20% more FLOPs
# than the rows' lengths, and that was the whole gap to ONNX Runtime in table
# 3 (RESULTS.md); every 8 tokens tied it, every 4 was slower (dots whose
# length is not a multiple of 8 run slower). Each length compiles once, on
# first use.
SERVING_STEP = 8
INPUTS = ('input_ids', 'attention_mask', 'token_type_ids')

__all__ = ['Batch', 'bucket_lengths', 'serving_buckets', 'prepare', 'forward', 'plan',
           'host_batch', 'compile_buckets', 'predict']


def fused_qkv_params(params: dict, num_layers: int) -> dict:
  """`params` with each layer's query, key and value projections as one
  `qkv` ([embed, 3, heads, kv] kernel, [3, heads, kv] bias), for a config
  with `fused_qkv`. Concatenated once, here, not in every call."""
  encoder = dict(params['encoder'])
  for i in range(num_layers):
    layer = dict(encoder[f'layer_{i}'])
    attention = dict(layer['attention'])
    s = attention['self']
    attention['self'] = {'qkv': {
        'kernel': jnp.stack([s[n]['kernel'] for n in ('query', 'key', 'value')], 1),
        'bias': jnp.stack([s[n]['bias'] for n in ('query', 'key', 'value')], 0)}}
    layer['attention'] = attention
    encoder[f'layer_{i}'] = layer
  return {**params, 'encoder': encoder}


def prepare(cfg: bert.BertConfig, params: dict, head: dict | None,
            dtype: str = 'float32', attention: str = 'auto',
            fuse_qkv: bool = True):
  """(config, encoder params, head) ready for `forward`: no dropout, no remat,
  one fused QKV projection a layer (`fuse_qkv`; `fused_qkv_params`),
  the compute `dtype`, the attention kernel `attention` resolved for this
  backend ('auto': cuDNN on a GPU in bfloat16, else XLA). The pooler, when
  the params hold one and the head does not, is dropped (unused)."""
  if dtype not in DTYPES:
    raise ValueError(f'dtype={dtype!r}: use one of {", ".join(DTYPES)}')
  kernel, _ = attention_lib.resolve(attention, head_dim=cfg.head_dim,
                                    dtype=dtype, dropout=0.0)
  cfg = cfg.replace(dtype=dtype, hidden_dropout=0.0, attention_dropout=0.0,
                    attention=kernel, remat='none', fused_qkv=fuse_qkv)
  encoder, rest, _ = heads.split_encoder_params(cfg, params)
  params = {**encoder, **rest}
  if fuse_qkv:
    params = fused_qkv_params(params, cfg.num_layers)
  if dtype != 'float32':
    params = jax.tree.map(
        lambda x: x.astype(dtype) if x.ndim >= 2 and jnp.issubdtype(
            x.dtype, jnp.floating) else x, params)
  return cfg, params, head


def forward(cfg: bert.BertConfig, params: dict, head: dict | None,
            batch: dict):
  """[B, outputs] logits (a head), or [B, H] first-token states (none)."""
  out = bert.apply(cfg, params, batch['input_ids'], batch['attention_mask'],
                   batch.get('token_type_ids'))
  first = out.hidden_states[-1][:, 0]
  if head is None:
    return first.astype(jnp.float32)
  return heads.head_apply(head, first, 0.0)


def serving_buckets(max_len: int, step: int = SERVING_STEP) -> tuple[int, ...]:
  """The padded lengths `predict` uses: every multiple of `step` below
  `max_len`, then `max_len`."""
  return bucket_lengths(max_len, list(range(step, max_len, step)))


def plan(lengths: np.ndarray, batch_size: int,
         buckets: Sequence[int]) -> list[Batch]:
  """Consecutive rows in their order, `batch_size` a batch (the last one
  short), each padded to the bucket of its longest row."""
  n = len(lengths)
  return [Batch(np.arange(s, min(s + batch_size, n)),
                int(bucket_of(lengths[s:s + batch_size].max(), buckets)))
          for s in range(0, n, batch_size)]


def host_batch(arrays: dict, batch: Batch, batch_size: int) -> dict:
  """The model inputs of `batch`: its rows cut to its length, filled up to
  `batch_size` rows with copies of its first row."""
  index = batch.index
  full = np.concatenate([index, np.full(batch_size - len(index), index[0],
                                        index.dtype)])
  return {k: np.asarray(arrays[k])[full, :batch.length] for k in INPUTS
          if k in arrays}


def batch_spec(arrays: dict, batch_size: int, length: int,
               sharding=None) -> dict:
  return {k: jax.ShapeDtypeStruct((batch_size, length), np.int32,
                                  sharding=sharding)
          for k in INPUTS if k in arrays}


def compile_buckets(cfg: bert.BertConfig, params: dict, head: dict | None,
                    arrays: dict, batch_size: int, lengths: Sequence[int],
                    sharding=None):
  """({length: compiled forward}, {length: compile seconds}) for each padded
  length in `lengths`, compiled one after the other. `sharding`: the batch's
  (e.g. split over a mesh's data axis; the params keep the shardings they
  were placed with); None: one device."""
  fn = jax.jit(functools.partial(forward, cfg))
  compiled, seconds = {}, {}
  for length in sorted(set(int(x) for x in lengths)):
    t = time.perf_counter()
    spec = batch_spec(arrays, batch_size, length, sharding)
    compiled[length] = fn.lower(params, head, spec).compile()
    seconds[length] = time.perf_counter() - t
  return compiled, seconds


def predict(cfg: bert.BertConfig, params: dict, head: dict | None,
            arrays: dict, batch_size: int,
            buckets: Sequence[int] | None = None) -> np.ndarray:
  """Outputs of every row of `arrays` ([N, ...] float32), in their order;
  `cfg`, `params` and `head` as `prepare` returns them. `buckets` None: every
  batch at the arrays' full length."""
  lengths = arrays['attention_mask'].sum(axis=1)
  buckets = buckets or (arrays['input_ids'].shape[1],)
  batches = plan(lengths, batch_size, buckets)
  compiled, _ = compile_buckets(cfg, params, head, arrays, batch_size,
                                [b.length for b in batches])
  params, head = jax.device_put((params, head))
  outs = []
  for b in batches:
    out = compiled[b.length](params, head, host_batch(arrays, b, batch_size))
    outs.append(np.asarray(out)[:len(b.index)])
  return np.concatenate(outs)
