"""Model FLOPs of the distillation step, for throughput and MFU reports.

Counted: matrix multiplications only, 2 FLOPs per multiply-add, per token of a
sequence of length L, with d = hidden size, f = intermediate size, V = vocabulary:

  one layer, forward:   2 * (4 d^2 + 2 d f)      Q, K, V, output; the two MLP matmuls
                      + 2 * 2 * L * d            Q K^T and probs @ V
  MLM head, forward:    2 * d^2 + 2 * d * V      transform dense; tied decoder
  model forward:        layers * (one layer) + MLM head

  distillation step:    teacher forward + 3 * student forward
                        (the student's backward is twice its forward; the frozen
                        teacher has no backward)

Embedding lookups, LayerNorms, softmaxes, GELUs and the optimizer update are not
counted: they are the overheads MFU is meant to expose. This is "model FLOPs" in
the PaLM sense, with no credit for recomputation.
"""

from __future__ import annotations

import time

from jaxdistil.models.bert import BertConfig


def matmul_rate(dtype: str, n: int, repeats: int = 8) -> float:
  """Measured FLOP/s of an n x n x n matmul on the default device, best of
  `repeats`: the machine's attainable rate, the denominator of MFU."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
  f = jax.jit(lambda x, y: x @ y)
  f(a, a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    f(a, a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n ** 3 / best


def layer_forward(cfg: BertConfig, seq_len: int) -> int:
  d, f = cfg.hidden_size, cfg.intermediate_size
  return 2 * (4 * d * d + 2 * d * f) + 4 * seq_len * d


def head_forward(cfg: BertConfig) -> int:
  d = cfg.hidden_size
  return 2 * d * d + 2 * d * cfg.vocab_size


def forward(cfg: BertConfig, seq_len: int) -> int:
  return cfg.num_layers * layer_forward(cfg, seq_len) + head_forward(cfg)


def distill_step(teacher: BertConfig | None, student: BertConfig,
                 seq_len: int) -> int:
  """FLOPs per token of one train step (teacher None: teacher-free MLM)."""
  teacher_flops = forward(teacher, seq_len) if teacher is not None else 0
  return teacher_flops + 3 * forward(student, seq_len)


def peak_flops(config) -> float:
  """FLOP/s the devices can do: `config.peak_flops_per_device` when set, else
  measured once (a matmul in the compute dtype on one device)."""
  per_device = config.peak_flops_per_device
  if not per_device:
    per_device = matmul_rate(config.dtype, 1024, repeats=4)
  import jax
  return per_device * jax.device_count()
