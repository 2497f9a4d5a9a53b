"""The jaxdistil distillation step in PyTorch + transformers, for comparison.

    python -m benchmarks.torch_distil --config=configs/distilbert_base.py \
        --config.max_len=128 --config.batch_size=32 --config.micro_batches=4 \
        [--data=DIR [--data_sequences=N]] --json

Same work as `python -m jaxdistil.bench` with the same flags:

- teacher: `BertForMaskedLM` at `config.model.teacher`'s sizes, eval mode, under
  `torch.no_grad()`; student: stock `DistilBertForMaskedLM` at the student's
  sizes (tied decoder, no token types), train mode, with DistilBERT's own
  dropout sites and nothing added (embeddings, attention probabilities, MLP
  output; none after the attention output projection) at the config's rates
  (0.1), position embeddings frozen as in the config.
- losses: `loss_terms` below is `jaxdistil.losses` in torch: T^2 * KL(teacher ||
  student) at temperature T summed over real tokens (or masked ones with
  `loss.restrict_ce_to_mask`), MLM cross-entropy at the selected positions,
  1 - cos of the last hidden states over real tokens, logits MSE (weight 0,
  computed as a metric without gradient, as ours). Each is a sum divided by its
  token count over the *whole* batch (every micro-batch), weighted by
  `loss.alpha_*`.
- gradient accumulation over `config.micro_batches` micro-batches, one backward
  each: strided (rows i, i + M, ...) of the random batch, or, with `--data`,
  consecutive batches of the grouped sampler, each padded to its own longest
  row (so shapes vary from pass to pass, as in the reference).
- global-norm clipping at `optim.clip_norm` over the trainable parameters, then
  AdamW (betas, eps, learning rate schedule: linear warm-up then linear decay;
  weight decay on matrices only) as `jaxdistil.optim`.
- random weights and the same random full-length masked batch as ours
  (`jaxdistil.data.synthetic.random_batch` with the config's seed), reused each step.

`--data=DIR` (a directory of `python -m jaxdistil.prepare`) times real text the
way the reference DistilBERT code (transformers
`examples/research_projects/distillation`, `--group_by_size`) batches it:

- at most `--data_sequences` (default 50,000) sequences, a seeded uniform random
  subset over all shards (TFRecords parsed here; CRCs not checked);
- `create_lengths_groups(lengths, k)`: bins `np.arange(3, k, 4)`, group = number
  of bins <= length (`bisect_right`), so lengths 3-6, 7-10, 11-14, ... share a
  group; k = the model's position count (the reference's
  `max_model_input_size`, 512 for BERT-base);
- `GroupedBatchSampler` over a `RandomSampler` (a seeded numpy permutation per
  epoch) with the per-pass batch `config.batch_size / config.micro_batches`: an
  index joins its group's buffer and a full buffer is the next batch; at the
  end of an epoch the leftover buffers, concatenated in group order, are cut
  into batches too (the last shorter one is skipped here, so every step has
  `config.batch_size` rows);
- each batch padded to its longest row (`batch_sequences`), then masked as
  `prepare_batch_mlm` does (numpy, seeded, before timing): 15% of the batch's
  real non-special tokens, chosen uniformly (count rounded stochastically), of
  those 80% [MASK], 10% a random token, 10% unchanged;
- an optimizer step = `config.micro_batches` consecutive sampler batches.

Measured as ours: `--warmup` untimed steps, then `--steps` timed steps; step
time = their median. Random batch: tokens/s = batch x length / step; MFU =
tokens/s x `jaxdistil.flops` FLOPs per token / the float32 matmul rate measured
in the same run (torch.mm of 2048^3, best of 8, before and after the timed
steps, the higher kept). `--data`: `real_tokens_per_s` (also `tokens_per_s`) =
the non-padding tokens of all timed steps / their total time; padding is not
work. MFU counts model FLOPs of real tokens only: a sequence of n real tokens
costs n x `flops.distill_step(n)` (`flops_per_token` is their average per real
token). `padding_fraction` is of the timed batches' positions.
`torch.set_num_threads` is the number of cores this process may use.
With `--json` the last line printed is one JSON object.
"""

from __future__ import annotations

import os
import sys


def _flag_on(argv, name: str) -> bool:
  on = None
  for a in argv:
    if a in (f'--{name}', f'--{name}=true', f'--{name}=True', f'--{name}=1'):
      on = True
    elif a in (f'--no{name}', f'--{name}=false', f'--{name}=False', f'--{name}=0'):
      on = False
  return bool(on)


if __name__ == '__main__' and _flag_on(sys.argv[1:], 'keep_freed_memory'):
  # jaxdistil's glibc settings (one arena, no mmap, no trim), before torch starts
  # any thread; off by default, so that the default is stock PyTorch.
  os.environ['JAXDISTIL_KEEP_HOST_MEMORY'] = '1'
  from jaxdistil import host_memory
  host_memory.keep_freed_memory()

import contextlib
import json
import math
import platform
import resource
import time
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
import transformers

from jaxdistil import config_lib, flops
from jaxdistil.data import synthetic
from jaxdistil.config_lib import ConfigError
from jaxdistil.losses import LossConfig
from jaxdistil.models.bert import BertConfig
from jaxdistil.optim import OptimConfig

Tensor = torch.Tensor
SumCount = tuple[Tensor, Tensor]


# --------------------------------------------------------------------------
# The losses: jaxdistil.losses, term by term, on torch tensors.

def token_weights(batch: dict, cfg: LossConfig) -> dict:
  """Which tokens each term sums over (bool [B, L]); the batch only."""
  real = batch['attention_mask'] > 0
  selected = batch['mlm_mask'] > 0
  ce = (selected & real) if cfg.restrict_ce_to_mask else real
  return {'ce': ce, 'mlm': selected & real, 'cos': real, 'mse': ce}


def counts(batch: dict, cfg: LossConfig) -> dict:
  return {k: w.to(torch.float32).sum() for k, w in token_weights(batch, cfg).items()}


def _masked_sum(per_token: Tensor, weights: Tensor) -> SumCount:
  w = weights.to(torch.float32)
  return torch.where(w > 0, per_token * w, 0.0).sum(), w.sum()


def soft_cross_entropy(student_logits, teacher_logits, weights,
                       temperature: float) -> SumCount:
  """Sum over weighted tokens of T^2 * KL(softmax(t/T) || softmax(s/T))."""
  log_ps = F.log_softmax(student_logits.to(torch.float32) / temperature, dim=-1)
  log_pt = F.log_softmax(teacher_logits.to(torch.float32) / temperature, dim=-1)
  kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1)
  total, count = _masked_sum(kl, weights)
  return total * temperature ** 2, count


def masked_lm(student_logits, labels, mlm_mask) -> SumCount:
  """Sum over selected positions of -log p_student(true token)."""
  logits = student_logits.to(torch.float32)
  labels = labels.long().clamp(0, logits.shape[-1] - 1)
  true = logits.gather(-1, labels[..., None])[..., 0]
  return _masked_sum(torch.logsumexp(logits, dim=-1) - true, mlm_mask)


def cosine(student_hidden, teacher_hidden, weights, eps: float = 1e-8) -> SumCount:
  """Sum over weighted tokens of 1 - cos(student_hidden, teacher_hidden)."""
  s = student_hidden.to(torch.float32)
  t = teacher_hidden.to(torch.float32)
  dot = (s * t).sum(-1)
  norms = torch.sqrt((s * s).sum(-1) * (t * t).sum(-1))
  return _masked_sum(1.0 - dot / norms.clamp_min(eps), weights)


def mse_logits(student_logits, teacher_logits, weights) -> SumCount:
  diff = student_logits.to(torch.float32) - teacher_logits.to(torch.float32)
  return _masked_sum((diff * diff).sum(-1), weights)


def loss_terms(student_logits, student_hidden, teacher_logits, teacher_hidden,
               batch: dict, cfg: LossConfig) -> dict:
  """(sum, count) of every term, as `jaxdistil.losses.terms`.

  Terms of weight 0 are computed from detached inputs (metrics, no gradient), as
  ours stops their gradient. No teacher (None logits): the MLM term only.
  """
  w = token_weights(batch, cfg)

  def maybe_detached(term, fn, *args):
    if cfg.weight(term):
      return fn(*args)
    with torch.no_grad():
      return fn(*(a.detach() if isinstance(a, Tensor) else a for a in args))

  out = {'mlm': maybe_detached('mlm', masked_lm, student_logits, batch['labels'],
                               w['mlm'])}
  if teacher_logits is not None:
    out['ce'] = maybe_detached('ce', soft_cross_entropy, student_logits,
                               teacher_logits, w['ce'], cfg.temperature)
    out['cos'] = maybe_detached('cos', cosine, student_hidden, teacher_hidden,
                                w['cos'])
    out['mse'] = maybe_detached('mse', mse_logits, student_logits, teacher_logits,
                                w['mse'])
  return out


def total(sums: dict, total_counts: dict, cfg: LossConfig) -> Tensor:
  """sum_k a_k * S_k / N_k, N_k the token count of the whole batch."""
  loss = torch.zeros((), dtype=torch.float32)
  for k, s in sums.items():
    if cfg.weight(k):
      loss = loss + cfg.weight(k) * s / total_counts[k].clamp_min(1.0)
  return loss


# --------------------------------------------------------------------------
# Optimizer schedule: jaxdistil.optim.schedule without optax.

def learning_rate(cfg: OptimConfig, total_steps: int, step: int) -> float:
  """Linear warm-up from 0 over ceil(warmup_fraction * total) steps, then linear
  decay to 0 (the value optax's `join_schedules` gives at `step`)."""
  warmup = max(1, math.ceil(cfg.warmup_fraction * total_steps))
  decay = max(1, total_steps - warmup)
  if step < warmup:
    return cfg.learning_rate * min(max(step, 0), warmup) / warmup
  return cfg.learning_rate * (1.0 - min(step - warmup, decay) / decay)


# --------------------------------------------------------------------------
# The models at our configs' sizes.

def hf_teacher_config(t: BertConfig, attn_implementation: str):
  return transformers.BertConfig(
      vocab_size=t.vocab_size, hidden_size=t.hidden_size,
      num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads,
      intermediate_size=t.intermediate_size,
      hidden_act=getattr(t, 'hidden_act', 'gelu'),
      hidden_dropout_prob=t.hidden_dropout,
      attention_probs_dropout_prob=t.attention_dropout,
      max_position_embeddings=t.max_position_embeddings,
      type_vocab_size=max(1, t.type_vocab_size), layer_norm_eps=t.layer_norm_eps,
      initializer_range=getattr(t, 'initializer_range', 0.02),
      tie_word_embeddings=getattr(t, 'tie_word_embeddings', True),
      pad_token_id=None, attn_implementation=attn_implementation)


def hf_student_config(s: BertConfig, attn_implementation: str):
  return transformers.DistilBertConfig(
      vocab_size=s.vocab_size, dim=s.hidden_size, n_layers=s.num_layers,
      n_heads=s.num_heads, hidden_dim=s.intermediate_size,
      dropout=s.hidden_dropout, attention_dropout=s.attention_dropout,
      activation=getattr(s, 'hidden_act', 'gelu'),
      max_position_embeddings=s.max_position_embeddings,
      initializer_range=getattr(s, 'initializer_range', 0.02),
      tie_word_embeddings=getattr(s, 'tie_word_embeddings', True),
      # No padding_idx: ours updates every row of the word embeddings.
      pad_token_id=None, attn_implementation=attn_implementation)


class TorchDistiller:
  """Teacher, student, optimizer and the step, built from one of our configs."""

  def __init__(self, config, device: str = 'cpu', attn_implementation: str = 'sdpa'):
    self.device = torch.device(device)
    self.teacher_cfg = config_lib.teacher_config(config)
    self.student_cfg = config_lib.student_config(config)
    self.loss_cfg = config_lib.loss_config(config)
    self.optim_cfg = config_lib.optim_config(config)
    self.micro_batches = int(config.micro_batches)
    self.total_steps = int(config.total_steps)
    self.dtype = config.dtype
    self.steps_taken = 0

    torch.manual_seed(config.seed)
    self.teacher = None
    if self.loss_cfg.needs_teacher:
      self.teacher = transformers.BertForMaskedLM(
          hf_teacher_config(self.teacher_cfg, attn_implementation)).to(self.device)
      self.teacher.eval()
      self.teacher.requires_grad_(False)
    self.student = transformers.DistilBertForMaskedLM(
        hf_student_config(self.student_cfg, attn_implementation)).to(self.device)
    if config.student_init.freeze_position_embeddings:
      self.student.distilbert.embeddings.position_embeddings.weight.requires_grad_(
          False)
    self.student.train()

    self.params = [p for p in self.student.parameters() if p.requires_grad]
    o = self.optim_cfg
    # Weight decay on matrices (kernels, embeddings) only, as jaxdistil.optim.
    self.optimizer = torch.optim.AdamW(
        [{'params': [p for p in self.params if p.dim() >= 2],
          'weight_decay': o.weight_decay},
         {'params': [p for p in self.params if p.dim() < 2], 'weight_decay': 0.0}],
        lr=o.learning_rate, betas=(o.b1, o.b2), eps=o.eps)

  def _autocast(self):
    if self.dtype == 'bfloat16':
      return torch.autocast(self.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

  def to_device(self, batch: dict) -> dict:
    return {k: torch.as_tensor(np.asarray(v), dtype=torch.long).to(self.device)
            for k, v in batch.items()}

  def forward(self, micro: dict):
    """(student_logits, student_hidden, teacher_logits, teacher_hidden), the last
    two None without a teacher; the student's with autograd."""
    t_logits = t_hidden = None
    with self._autocast():
      if self.teacher is not None:
        with torch.no_grad():
          out = self.teacher(input_ids=micro['input_ids'],
                             attention_mask=micro['attention_mask'],
                             token_type_ids=micro.get('token_type_ids'),
                             output_hidden_states=True)
          t_logits, t_hidden = out.logits, out.hidden_states[-1]
          del out
      out = self.student(input_ids=micro['input_ids'],
                         attention_mask=micro['attention_mask'],
                         output_hidden_states=True)
    return out.logits, out.hidden_states[-1], t_logits, t_hidden

  def accumulate_grads(self, batch) -> dict:
    """Forward + backward over the micro-batches; .grad holds the batch's
    gradient. Returns the summed (detached) loss sums and the counts.

    `batch`: one [B, L] dict, split into `config.micro_batches` strided
    micro-batches (rows i, i + M, ...); or a list of micro-batch dicts, each of
    its own padded length (real text batched by size), used as they are.
    """
    if isinstance(batch, dict):
      m = self.micro_batches
      micros = [{k: v[i::m] for k, v in batch.items()} for i in range(m)] \
          if m > 1 else [batch]
    else:
      micros = list(batch)
    # Counts over the whole step (every micro-batch), as ours.
    per_micro = [counts(micro, self.loss_cfg) for micro in micros]
    total_counts = {k: sum(c[k] for c in per_micro) for k in per_micro[0]}
    sums = {}
    for micro in micros:
      s_logits, s_hidden, t_logits, t_hidden = self.forward(micro)
      terms = loss_terms(s_logits, s_hidden, t_logits, t_hidden, micro,
                         self.loss_cfg)
      part = {k: s for k, (s, _) in terms.items()}
      total(part, total_counts, self.loss_cfg).backward()
      for k, s in part.items():
        sums[k] = sums[k] + s.detach() if k in sums else s.detach()
    return {'sums': sums, 'counts': total_counts}

  def step(self, batch) -> dict:
    """One optimizer step on a [B, L] batch or a list of micro-batches (torch
    tensors, see `accumulate_grads`); float metrics."""
    acc = self.accumulate_grads(batch)
    clip = self.optim_cfg.clip_norm
    grad_norm = torch.nn.utils.clip_grad_norm_(
        self.params, clip if clip > 0 else float('inf'))
    lr = learning_rate(self.optim_cfg, self.total_steps, self.steps_taken)
    for group in self.optimizer.param_groups:
      group['lr'] = lr
    self.optimizer.step()
    self.optimizer.zero_grad(set_to_none=True)
    self.steps_taken += 1
    sums, n = acc['sums'], acc['counts']
    metrics = {f'loss_{k}': float(s / n[k].clamp_min(1.0)) for k, s in sums.items()}
    metrics.update(loss=float(total(sums, n, self.loss_cfg)),
                   grad_norm=float(grad_norm), learning_rate=lr)
    return metrics


# --------------------------------------------------------------------------
# Real text: a prepared directory (jaxdistil.data.corpus), batched as the
# reference DistilBERT code batches with `--group_by_size`, masked as it masks.

def read_tfrecord_payloads(path: str, wanted=None) -> list[bytes]:
  """The payloads of a TFRecord file (framing: 8-byte little-endian length,
  4-byte length CRC, payload, 4-byte payload CRC; the CRCs are not checked).
  `wanted`: sorted record indices to keep (None: all)."""
  with open(path, 'rb') as f:
    data = f.read()
  out, pos, i, n = [], 0, 0, len(data)
  keep = None if wanted is None else iter(wanted)
  nxt = None if keep is None else next(keep, None)
  while pos < n:
    if pos + 12 > n:
      raise ValueError(f'{path}: truncated TFRecord header at byte {pos}')
    size = int.from_bytes(data[pos:pos + 8], 'little')
    start, end = pos + 12, pos + 12 + size
    if end + 4 > n:
      raise ValueError(f'{path}: truncated TFRecord record {i} at byte {pos}')
    if keep is None:
      out.append(data[start:end])
    elif i == nxt:
      out.append(data[start:end])
      nxt = next(keep, None)
      if nxt is None:
        return out
    pos, i = end + 4, i + 1
  if keep is not None and nxt is not None:
    raise ValueError(f'{path}: has {i} records, record {nxt} asked for')
  return out


def read_prepared(directory: str, max_sequences: int = 0, seed: int = 0):
  """(sequences, indices, metadata): the token ids (int64 arrays) of
  `max_sequences` sequences (0: all) of a prepared directory, a seeded uniform
  random subset of all its shards, in the directory's order; `indices` are their
  positions in the whole directory (shard after shard)."""
  meta_path = os.path.join(directory, 'metadata.json')
  if not os.path.exists(meta_path):
    raise ConfigError(f'--data={directory!r} is not a prepared directory (no '
                      f'metadata.json): make one with python -m jaxdistil.prepare')
  with open(meta_path) as f:
    meta = json.load(f)
  dtype = np.dtype(meta.get('dtype', 'uint16')).newbyteorder('<')
  shards = meta['shards']
  sizes = np.array([s['sequences'] for s in shards], np.int64)
  total_n = int(sizes.sum())
  take = total_n if max_sequences <= 0 else min(int(max_sequences), total_n)
  rng = np.random.default_rng([seed, 0xDA7A])
  chosen = np.sort(rng.choice(total_n, size=take, replace=False)) \
      if take < total_n else np.arange(total_n)
  starts = np.concatenate([[0], np.cumsum(sizes)])
  sequences = []
  for k, s in enumerate(shards):
    local = chosen[(chosen >= starts[k]) & (chosen < starts[k + 1])] - starts[k]
    if not len(local):
      continue
    wanted = None if len(local) == sizes[k] else local.tolist()
    payloads = read_tfrecord_payloads(os.path.join(directory, s['file']), wanted)
    if len(payloads) != len(local):
      raise ValueError(f"{s['file']}: {len(payloads)} records, metadata says "
                       f"{int(sizes[k])}")
    sequences.extend(np.frombuffer(p, dtype).astype(np.int64) for p in payloads)
  return sequences, chosen, meta


def length_groups(lengths, max_model_input_size: int) -> np.ndarray:
  """The reference's `create_lengths_groups(lengths, k)`: bins 3, 7, 11, ... < k
  (`np.arange(3, k, 4)`), group = the number of bins <= length
  (`bisect.bisect_right`): lengths 3-6 are group 1, 7-10 group 2, and so on."""
  bins = np.arange(3, max_model_input_size, 4)
  return np.searchsorted(bins, np.asarray(lengths), side='right')


def grouped_batches(group_ids, batch_size: int, order) -> Iterator[list]:
  """One epoch of the reference's `GroupedBatchSampler` over the indices in
  `order` (its `RandomSampler`'s permutation): each index goes into its group's
  buffer, and a buffer that reaches `batch_size` is yielded as a batch. When
  `order` is exhausted, the buffers left (each under `batch_size`) are
  concatenated in increasing group order and cut into batches of `batch_size`;
  the last, shorter one is yielded too. Every index exactly once, ceil(N /
  batch_size) batches."""
  buffers: dict = {}
  for idx in order:
    idx = int(idx)
    buf = buffers.setdefault(int(group_ids[idx]), [])
    buf.append(idx)
    if len(buf) == batch_size:
      yield buf
      del buffers[int(group_ids[idx])]
  rest: list = []
  for g in sorted(buffers):
    rest.extend(buffers[g])
    if len(rest) >= batch_size:
      yield rest[:batch_size]
      rest = rest[batch_size:]
  if rest:
    yield rest


def pad_batch(sequences: list, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids [B, L], lengths [B]), L the longest row (the reference's
  `batch_sequences`)."""
  lengths = np.array([len(s) for s in sequences], np.int64)
  ids = np.full((len(sequences), int(lengths.max())), pad_id, np.int64)
  for i, s in enumerate(sequences):
    ids[i, :len(s)] = s
  return ids, lengths


def mask_batch(ids: np.ndarray, lengths: np.ndarray, special_ids, mask_id: int,
               vocab_size: int, rng: np.random.Generator, mask_prob: float = 0.15,
               mask_token_prob: float = 0.8, random_token_prob: float = 0.1) -> dict:
  """Masked-LM inputs of a padded batch, as the reference masks a batch: of the
  real tokens that are not special, 15% (the count rounded stochastically) are
  chosen uniformly without replacement over the whole batch; of those 80%
  become [MASK], 10% a token uniform over the vocabulary, 10% stay."""
  real = np.arange(ids.shape[1])[None, :] < lengths[:, None]
  candidate = real & ~np.isin(ids, np.asarray(list(special_ids)))
  where = np.flatnonzero(candidate)
  n = min(len(where), int(np.floor(mask_prob * len(where) + rng.random())))
  chosen = np.zeros(ids.size, bool)
  chosen[rng.choice(where, size=n, replace=False)] = True
  chosen = chosen.reshape(ids.shape)
  roll = rng.random(ids.shape)
  to_mask = chosen & (roll < mask_token_prob)
  to_random = chosen & (roll >= mask_token_prob) & (
      roll < mask_token_prob + random_token_prob)
  inputs = np.where(to_mask, mask_id,
                    np.where(to_random, rng.integers(0, vocab_size, ids.shape), ids))
  return {'input_ids': inputs, 'attention_mask': real.astype(np.int64),
          'labels': ids, 'mlm_mask': chosen.astype(np.int64),
          'token_type_ids': np.zeros_like(ids)}


class RealBatches:
  """Masked micro-batches of real text, the reference's `group_by_size` way.

  The sequences of `--data` (a seeded subset of at most `--data_sequences`),
  grouped by length (`length_groups` with k = the model's position count, the
  reference's `max_model_input_size`: 512 for BERT-base); each epoch a seeded
  random permutation (the `RandomSampler`) drives `grouped_batches` with the
  per-pass batch size (`config.batch_size / config.micro_batches`, the
  reference's `--batch_size` under `--gradient_accumulation_steps`); each batch
  is padded to its longest row and masked (`mask_batch`). An epoch's last batch,
  if shorter than the per-pass size, is skipped so every step has
  `config.batch_size` rows; then the next epoch begins.
  """

  def __init__(self, config, directory: str, max_sequences: int = 50_000):
    teacher = config_lib.teacher_config(config)
    student = config_lib.student_config(config)
    self.sequences, self.indices, self.meta = read_prepared(
        directory, max_sequences, config.seed)
    meta = self.meta
    if meta['max_len'] != config.max_len:
      raise ConfigError(
          f"--data={directory!r} was prepared at max_len {meta['max_len']}, the "
          f"config says {config.max_len}: pass --config.max_len={meta['max_len']}")
    if meta['vocab_size'] > min(teacher.vocab_size, student.vocab_size):
      raise ConfigError(
          f"--data={directory!r} has {meta['vocab_size']} token ids, the models "
          f"{teacher.vocab_size}: use the teacher's tokenizer's data")
    self.per_pass = config.batch_size // config.micro_batches
    if len(self.sequences) < self.per_pass:
      raise ConfigError(f'--data={directory!r}: {len(self.sequences)} sequences '
                        f'read, fewer than one batch of {self.per_pass}')
    ids = meta['special_ids']
    self.pad_id, self.mask_id = ids['pad'], ids['mask']
    self.special_ids = sorted({ids[k] for k in ('cls', 'sep', 'pad', 'mask', 'unk')
                               if k in ids})
    self.vocab_size = student.vocab_size
    self.lengths = np.array([len(s) for s in self.sequences], np.int64)
    self.max_model_input_size = student.max_position_embeddings
    self.groups = length_groups(self.lengths, self.max_model_input_size)
    self._order_rng = np.random.default_rng([config.seed, 0x5A3])
    self._mask_rng = np.random.default_rng([config.seed, 0x3A5C])
    self._indices = self._index_batches()
    self.epochs = 0

  def _index_batches(self) -> Iterator[list]:
    while True:
      order = self._order_rng.permutation(len(self.sequences))
      for batch in grouped_batches(self.groups, self.per_pass, order):
        if len(batch) == self.per_pass:
          yield batch
      self.epochs += 1

  def next_micro_batch(self) -> dict:
    """The next masked, padded micro-batch (numpy int64 arrays)."""
    idx = next(self._indices)
    ids, lengths = pad_batch([self.sequences[i] for i in idx], self.pad_id)
    return mask_batch(ids, lengths, self.special_ids, self.mask_id,
                      self.vocab_size, self._mask_rng)

  def steps(self, n: int, micro_batches: int) -> list[list[dict]]:
    """`n` optimizer steps of `micro_batches` consecutive micro-batches."""
    return [[self.next_micro_batch() for _ in range(micro_batches)]
            for _ in range(n)]


def model_flops(teacher, student, lengths) -> int:
  """Model FLOPs of a step over sequences of these real lengths: each sequence
  of n tokens costs n x `flops.distill_step(.., n)` (attention over its own n
  tokens; padding and attention to it are not model work)."""
  base = flops.distill_step(teacher, student, 0)
  per_len = flops.distill_step(teacher, student, 1) - base   # linear in length
  n = np.asarray(lengths, np.int64)
  return int((n * (base + per_len * n)).sum())


# --------------------------------------------------------------------------
# The benchmark.

def cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'cpu'


def _sync(device: torch.device) -> None:
  if device.type == 'cuda':
    torch.cuda.synchronize(device)


def matmul_rate(dtype: str, n: int, device: str = 'cpu', repeats: int = 8) -> float:
  """FLOP/s of an n x n x n torch.mm, best of `repeats`."""
  dev = torch.device(device)
  a = torch.from_numpy(np.random.default_rng(0).standard_normal((n, n))).to(
      dev, getattr(torch, dtype))
  torch.mm(a, a)
  _sync(dev)
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    torch.mm(a, a)
    _sync(dev)
    best = min(best, time.perf_counter() - t)
  return 2 * n ** 3 / best


def _keep_freed_memory_applied(requested: bool) -> bool:
  if not requested:
    return False
  from jaxdistil import host_memory
  return host_memory.applied()


def benchmark(config, steps: int, warmup: int = 1, matmul_n: int = 2048,
              threads: int = 0, device: str = 'cpu',
              attn_implementation: str = 'sdpa',
              keep_freed_memory: bool = False,
              data: str | None = None, data_sequences: int = 50_000) -> dict:
  """The step timed on the random full-length batch, or with `data` (a prepared
  directory) on real batches grouped by size (`RealBatches`)."""
  config_lib.validate(config, 1, (1, 1, 1))
  if steps < 1:
    raise ConfigError(f'--steps={steps} must be >= 1')
  if warmup < 0:
    raise ConfigError(f'--warmup={warmup} must be >= 0')
  threads = threads or cores()
  torch.set_num_threads(threads)
  real = None
  read_s = None
  if data:
    t = time.perf_counter()
    real = RealBatches(config, data, data_sequences)
    read_s = time.perf_counter() - t
  t = time.perf_counter()
  d = TorchDistiller(config, device, attn_implementation)
  build_s = time.perf_counter() - t
  b, length = config.batch_size, config.max_len
  teacher = d.teacher_cfg if d.loss_cfg.needs_teacher else None
  if real is None:
    rng = np.random.default_rng(config.seed)
    batch = d.to_device(synthetic.random_batch(rng, b, length,
                                               d.student_cfg.vocab_size,
                                               full_length=True))
    all_steps = [batch] * (warmup + steps)
  else:
    # Read, batched, padded, masked and on the device before any clock starts.
    numpy_steps = real.steps(warmup + steps, config.micro_batches)
    all_steps = [[d.to_device(m) for m in s] for s in numpy_steps]

  mm_before = matmul_rate(config.dtype, matmul_n, device)
  warmup_times = []
  for batch in all_steps[:warmup]:
    t = time.perf_counter()
    d.step(batch)
    _sync(d.device)
    warmup_times.append(time.perf_counter() - t)
  times = []
  usage0 = resource.getrusage(resource.RUSAGE_SELF)
  for batch in all_steps[warmup:]:
    t = time.perf_counter()
    metrics = d.step(batch)
    _sync(d.device)
    times.append(time.perf_counter() - t)
  usage1 = resource.getrusage(resource.RUSAGE_SELF)
  step_s = float(np.median(times))
  mm_rate = max(mm_before, matmul_rate(config.dtype, matmul_n, device))

  extra = {}
  if real is None:
    per_token = flops.distill_step(teacher, d.student_cfg, length)
    tokens_per_s = b * length / step_s
  else:
    timed = [m for s in numpy_steps[warmup:] for m in s]
    row_lengths = np.concatenate([m['attention_mask'].sum(1) for m in timed])
    real_tokens = int(row_lengths.sum())
    padded_tokens = int(sum(m['attention_mask'].size for m in timed))
    per_token = model_flops(teacher, d.student_cfg, row_lengths) / real_tokens
    tokens_per_s = real_tokens / sum(times)     # real tokens only
    extra = {
        'data': data,
        'batching': 'group_by_size',
        'data_sequences': len(real.sequences),
        'data_epochs_started': real.epochs + 1,
        'real_tokens_per_s': tokens_per_s,
        'padded_tokens_per_s': padded_tokens / sum(times),
        'real_tokens': real_tokens,
        'padded_tokens': padded_tokens,
        'padding_fraction': 1.0 - real_tokens / padded_tokens,
        'masked_tokens': int(sum(m['mlm_mask'].sum() for m in timed)),
        'micro_batch_lengths': [[int(m['input_ids'].shape[1]) for m in s]
                                for s in numpy_steps[warmup:]],
        'mean_real_length': real_tokens / len(row_lengths),
        'max_model_input_size': real.max_model_input_size,
        'read_s': read_s,
    }
  count = lambda m: 0 if m is None else sum(p.numel() for p in m.parameters())
  result = {
      'framework': 'pytorch',
      'torch_version': torch.__version__,
      'transformers_version': transformers.__version__,
      'platform': d.device.type,
      'device_kind': cpu_name() if d.device.type == 'cpu'
                     else torch.cuda.get_device_name(d.device),
      'threads': torch.get_num_threads(),
      'attn_implementation': d.student.config._attn_implementation,
      'keep_freed_memory': _keep_freed_memory_applied(keep_freed_memory),
      'dtype': config.dtype,
      'batch_size': b, 'max_len': length, 'micro_batches': config.micro_batches,
      'teacher_layers': d.teacher_cfg.num_layers,
      'student_layers': d.student_cfg.num_layers,
      'teacher_params': count(d.teacher), 'student_params': count(d.student),
      'tokens_per_s': tokens_per_s,
      'step_s': step_s,
      'step_s_min': float(min(times)),
      'step_times_s': times,
      'warmup_s': warmup_times[0] if warmup_times else None,
      'build_s': build_s,
      'flops_per_token': per_token,
      'matmul_flops_per_s': mm_rate,
      'mfu': tokens_per_s * per_token / mm_rate,
      'peak_host_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      'host_user_s_per_step': (usage1.ru_utime - usage0.ru_utime) / steps,
      'host_sys_s_per_step': (usage1.ru_stime - usage0.ru_stime) / steps,
      'page_faults_per_step': (usage1.ru_minflt - usage0.ru_minflt) / steps,
      'loss': metrics['loss'],
      'steps': steps, 'warmup': warmup,
  }
  result.update(extra)
  return result


def report(r: dict) -> str:
  gib = 2 ** 30
  warm = f"{r['warmup_s']:.3f} s" if r['warmup_s'] is not None else 'none'
  real = 'real_tokens_per_s' in r
  if real:
    lens = [n for s in r['micro_batch_lengths'] for n in s]
    shape = [
        f"data         {r['data']}: {r['data_sequences']} sequences read "
        f"(mean {r['mean_real_length']:.1f} tokens), grouped by size",
        f"shape        batch {r['batch_size']} (max length {r['max_len']}) as "
        f"{r['micro_batches']} micro-batch(es) padded to their longest row "
        f"({min(lens)}-{max(lens)} tokens); teacher {r['teacher_layers']} "
        f"layers, student {r['student_layers']}",
        f"padding      {100 * r['padding_fraction']:.1f}% of the timed positions",
    ]
    speed = [
        f"throughput   {r['real_tokens_per_s']:.1f} real tokens/s "
        f"({r['real_tokens']} real tokens in {sum(r['step_times_s']):.3f} s; "
        f"{r['padded_tokens_per_s']:.1f} with padding)",
        f"model FLOPs  {r['flops_per_token'] / 1e6:.1f} MFLOP/real token on "
        f"average (teacher fwd + 3 x student fwd, attention over each sequence's "
        f"own length)",
    ]
  else:
    shape = [
        f"shape        batch {r['batch_size']} x length {r['max_len']}, "
        f"{r['micro_batches']} micro-batch(es); teacher {r['teacher_layers']} "
        f"layers, student {r['student_layers']}",
    ]
    speed = [
        f"throughput   {r['tokens_per_s']:.1f} tokens/s",
        f"model FLOPs  {r['flops_per_token'] / 1e6:.1f} MFLOP/token "
        f"(teacher fwd + 3 x student fwd)",
    ]
  return '\n'.join([
      f"framework    PyTorch {r['torch_version']}, transformers "
      f"{r['transformers_version']}, attention {r['attn_implementation']}",
      f"device       {r['device_kind']} ({r['platform']}), {r['threads']} threads, "
      f"{r['dtype']}",
      *shape,
      f"first step   {warm} (warm-up, untimed)",
      f"step         {r['step_s']:.3f} s (median of {r['steps']}), "
      f"{r['step_s_min']:.3f} s (best)",
      *speed,
      f"matmul rate  {r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s measured (torch.mm)",
      f"MFU          {r['mfu']:.3f}" + (' (real tokens)' if real else ''),
      f"memory       host peak RSS {r['peak_host_rss_bytes'] / gib:.2f} GiB",
      f"host CPU     {r['host_user_s_per_step']:.2f} s user, "
      f"{r['host_sys_s_per_step']:.2f} s system, "
      f"{r['page_faults_per_step']:.0f} page faults per step",
  ])


def _define_flags():
  from absl import flags
  from ml_collections import config_flags
  return {
      'config': config_flags.DEFINE_config_file('config', None, 'Config file.',
                                                lock_config=True),
      'json': flags.DEFINE_bool('json', False,
                                'Print one JSON object as the last line.'),
      'steps': flags.DEFINE_integer('steps', 5, 'Timed steps (median reported).'),
      'warmup': flags.DEFINE_integer('warmup', 1, 'Untimed steps before them.'),
      'matmul_size': flags.DEFINE_integer('matmul_size', 2048,
                                          'Size n of the n^3 matmul.'),
      'threads': flags.DEFINE_integer('threads', 0,
                                      'torch threads (0: the cores available).'),
      'device': flags.DEFINE_string('device', 'cpu', 'torch device.'),
      'attn_implementation': flags.DEFINE_string(
          'attn_implementation', 'sdpa', 'transformers attention: sdpa or eager.'),
      'keep_freed_memory': flags.DEFINE_bool(
          'keep_freed_memory', False,
          "Apply jaxdistil.host_memory's glibc settings before torch starts "
          '(off: stock PyTorch).'),
      'data': flags.DEFINE_string(
          'data', None, 'A prepared directory (python -m jaxdistil.prepare): time '
          'the step on its text, batched by size as the reference DistilBERT '
          'code, and report real (non-padding) tokens/s.'),
      'data_sequences': flags.DEFINE_integer(
          'data_sequences', 50_000, 'With --data: read at most this many '
          'sequences (a seeded random subset of all shards; 0: all).'),
  }


def main(argv, f):
  from absl import app
  del argv
  if f['config'].value is None:
    raise app.UsageError('--config=configs/<name>.py is required')
  config = f['config'].value.unlock()
  try:
    result = benchmark(
        config, f['steps'].value, f['warmup'].value, f['matmul_size'].value,
        f['threads'].value, f['device'].value, f['attn_implementation'].value,
        f['keep_freed_memory'].value, f['data'].value, f['data_sequences'].value)
  except ConfigError as e:
    print(f'benchmarks.torch_distil: config error: {e}', file=sys.stderr)
    sys.exit(2)
  print(report(result), flush=True)
  if f['json'].value:
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
  from absl import app as _app
  _flags = _define_flags()
  _app.run(lambda argv: main(argv, _flags))
