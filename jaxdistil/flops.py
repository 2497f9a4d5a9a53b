"""Model FLOPs of the distillation step, for throughput and MFU reports.

Counted: matrix multiplications only, 2 FLOPs per multiply-add, per token of a
sequence of length L, with d = hidden size, f = intermediate size, V = vocabulary:

  one layer, forward:   2 * (4 d^2 + 2 d f)      Q, K, V, output; the two MLP matmuls
                      + 2 * 2 * L * d            Q K^T and probs @ V
  MLM head, forward:    2 * d^2 + 2 * d * V      transform dense; tied decoder
  model forward:        layers * (one layer) + MLM head
  inference:            layers * (one layer), per real token, + a classifier
                        head per example (2 d^2 + 2 d * outputs), no MLM head

  distillation step:    teacher forward + 3 * student forward
                        (the student's backward is twice its forward; the frozen
                        teacher has no backward)

Embedding lookups, LayerNorms, softmaxes, GELUs and the optimizer update are not
counted: they are the overheads MFU is meant to expose. This is "model FLOPs" in
the PaLM sense, with no credit for recomputation.
"""

from __future__ import annotations

import time

from jaxdistil.models.config import BertConfig


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


def encoder_forward(cfg: BertConfig, seq_len: int) -> int:
  """FLOPs per token of the encoder alone (no MLM head): inference."""
  return cfg.num_layers * layer_forward(cfg, seq_len)


def classifier_forward(cfg: BertConfig, num_outputs: int) -> int:
  """FLOPs per example of a sequence-classification head on the first token:
  one H->H dense (pre-classifier, pooler or RoBERTa's dense), then H->outputs."""
  d = cfg.hidden_size
  return 2 * d * d + 2 * d * num_outputs


def inference(cfg: BertConfig, lengths, num_outputs: int | None) -> int:
  """Model FLOPs of classifying sequences of these real lengths (each of n
  tokens costs n x `encoder_forward(n)`, plus the head when `num_outputs`):
  padding is not model work."""
  head = classifier_forward(cfg, num_outputs) if num_outputs else 0
  return sum(int(n) * encoder_forward(cfg, int(n)) + head for n in lengths)


def distill_step(teacher: BertConfig | None, student: BertConfig,
                 seq_len: int) -> int:
  """FLOPs per token of one train step (teacher None: teacher-free MLM)."""
  teacher_flops = forward(teacher, seq_len) if teacher is not None else 0
  return teacher_flops + 3 * forward(student, seq_len)


# Dense bfloat16 peak FLOP/s per chip (a device as JAX counts it), from the
# vendors' published figures: Google Cloud's TPU system architecture pages
# (v4 275 T, v5e 197 T, v5p 459 T, v6e 918 T) and NVIDIA's data sheets (A100
# 312 T, H100 SXM and H200 989 T, H100 PCIe 756 T; without sparsity). Matched
# against `device_kind` in order, first hit wins.
KNOWN_PEAKS = (
    ('TPU v4', 275e12),
    ('TPU v5 lite', 197e12), ('TPU v5e', 197e12),
    ('TPU v5p', 459e12), ('TPU v5', 459e12),
    ('TPU v6 lite', 918e12), ('TPU v6e', 918e12),
    ('A100', 312e12),
    ('H100 PCIe', 756e12), ('H100', 989e12),
    ('H200', 989e12),
)


def known_peak(device_kind: str, dtype: str) -> float | None:
  """The published bfloat16 peak of a known chip, for bfloat16 runs; None for
  an unknown chip or another dtype (then the matmul rate is measured)."""
  if dtype != 'bfloat16':
    return None
  for name, peak in KNOWN_PEAKS:
    if name.lower() in device_kind.lower():
      return peak
  return None


def peak_flops(config) -> float:
  """FLOP/s the devices can do: `config.peak_flops_per_device` when set, else
  a known chip's published bfloat16 peak (`KNOWN_PEAKS`), else measured once
  (a matmul in the compute dtype on one device)."""
  import jax
  per_device = config.peak_flops_per_device
  if not per_device:
    per_device = known_peak(jax.devices()[0].device_kind, config.dtype)
  if not per_device:
    per_device = matmul_rate(config.dtype, 1024, repeats=4)
  import jax
  return per_device * jax.device_count()
