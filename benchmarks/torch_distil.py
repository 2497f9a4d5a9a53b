"""The jaxdistil distillation step in PyTorch + transformers, for comparison.

    python -m benchmarks.torch_distil --config=configs/distilbert_base.py \
        --config.max_len=128 --config.batch_size=32 --config.micro_batches=4 --json

Same work as `python -m jaxdistil.bench` with the same flags:

- teacher: `BertForMaskedLM` at `config.model.teacher`'s sizes, eval mode, under
  `torch.no_grad()`; student: `DistilBertForMaskedLM` at the student's sizes
  (tied decoder, no token types), train mode, dropout and attention dropout at
  the config's rates (0.1), position embeddings frozen as in the config.
  Stock DistilBERT has no dropout after the attention output projection, where
  our (BERT-layout) student has one; a forward hook adds it, so both drop out
  the same tensors (`--noattention_output_dropout` for stock DistilBERT).
- losses: `loss_terms` below is `jaxdistil.losses` in torch: T^2 * KL(teacher ||
  student) at temperature T summed over real tokens (or masked ones with
  `loss.restrict_ce_to_mask`), MLM cross-entropy at the selected positions,
  1 - cos of the last hidden states over real tokens, logits MSE (weight 0,
  computed as a metric without gradient, as ours). Each is a sum divided by its
  token count over the *whole* batch, weighted by `loss.alpha_*`.
- gradient accumulation over `config.micro_batches` strided micro-batches (rows
  i, i + M, ...), each divided by whole-batch counts, one backward each.
- global-norm clipping at `optim.clip_norm` over the trainable parameters, then
  AdamW (betas, eps, learning rate schedule: linear warm-up then linear decay;
  weight decay on matrices only) as `jaxdistil.optim`.
- random weights and the same random full-length masked batch as ours
  (`jaxdistil.synthetic.random_batch` with the config's seed).

Measured as ours: `--warmup` untimed steps, then the median of `--steps` timed
steps; tokens/s = batch x length / step; MFU = tokens/s x `jaxdistil.flops`
FLOPs per token / the float32 matmul rate measured in the same run (torch.mm of
2048^3, best of 8, before and after the timed steps, the higher kept).
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

import numpy as np
import torch
import torch.nn.functional as F
import transformers

from jaxdistil import config_lib, flops, synthetic
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


def add_attention_output_dropout(student, rate: float) -> None:
  """Dropout after each layer's attention output projection, as BERT (and our
  student) have and stock DistilBERT has not."""
  def hook(module, inputs, output):
    return F.dropout(output, rate, module.training)
  for layer in student.distilbert.transformer.layer:
    layer.attention.out_lin.register_forward_hook(hook)


class TorchDistiller:
  """Teacher, student, optimizer and the step, built from one of our configs."""

  def __init__(self, config, device: str = 'cpu', attn_implementation: str = 'sdpa',
               attention_output_dropout: bool = True):
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
    if attention_output_dropout and self.student_cfg.hidden_dropout > 0:
      add_attention_output_dropout(self.student, self.student_cfg.hidden_dropout)
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

  def accumulate_grads(self, batch: dict) -> dict:
    """Forward + backward over the micro-batches; .grad holds the batch's
    gradient. Returns the summed (detached) loss sums and the counts."""
    total_counts = counts(batch, self.loss_cfg)
    m = self.micro_batches
    sums = {}
    for i in range(m):
      micro = {k: v[i::m] for k, v in batch.items()} if m > 1 else batch
      s_logits, s_hidden, t_logits, t_hidden = self.forward(micro)
      terms = loss_terms(s_logits, s_hidden, t_logits, t_hidden, micro,
                         self.loss_cfg)
      part = {k: s for k, (s, _) in terms.items()}
      total(part, total_counts, self.loss_cfg).backward()
      for k, s in part.items():
        sums[k] = sums[k] + s.detach() if k in sums else s.detach()
    return {'sums': sums, 'counts': total_counts}

  def step(self, batch: dict) -> dict:
    """One optimizer step on a [B, L] batch (torch tensors); float metrics."""
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
              attention_output_dropout: bool = True,
              keep_freed_memory: bool = False) -> dict:
  config_lib.validate(config, 1, (1, 1, 1))
  if steps < 1:
    raise ConfigError(f'--steps={steps} must be >= 1')
  threads = threads or cores()
  torch.set_num_threads(threads)
  t = time.perf_counter()
  d = TorchDistiller(config, device, attn_implementation, attention_output_dropout)
  build_s = time.perf_counter() - t
  b, length = config.batch_size, config.max_len
  rng = np.random.default_rng(config.seed)
  batch = d.to_device(synthetic.random_batch(rng, b, length, d.student_cfg.vocab_size,
                                             full_length=True))

  mm_before = matmul_rate(config.dtype, matmul_n, device)
  warmup_times = []
  for _ in range(warmup):
    t = time.perf_counter()
    d.step(batch)
    _sync(d.device)
    warmup_times.append(time.perf_counter() - t)
  times = []
  usage0 = resource.getrusage(resource.RUSAGE_SELF)
  for _ in range(steps):
    t = time.perf_counter()
    metrics = d.step(batch)
    _sync(d.device)
    times.append(time.perf_counter() - t)
  usage1 = resource.getrusage(resource.RUSAGE_SELF)
  step_s = float(np.median(times))
  mm_rate = max(mm_before, matmul_rate(config.dtype, matmul_n, device))

  teacher = d.teacher_cfg if d.loss_cfg.needs_teacher else None
  per_token = flops.distill_step(teacher, d.student_cfg, length)
  tokens_per_s = b * length / step_s
  count = lambda m: 0 if m is None else sum(p.numel() for p in m.parameters())
  return {
      'framework': 'pytorch',
      'torch_version': torch.__version__,
      'transformers_version': transformers.__version__,
      'platform': d.device.type,
      'device_kind': cpu_name() if d.device.type == 'cpu'
                     else torch.cuda.get_device_name(d.device),
      'threads': torch.get_num_threads(),
      'attn_implementation': d.student.config._attn_implementation,
      'attention_output_dropout': bool(attention_output_dropout),
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


def report(r: dict) -> str:
  gib = 2 ** 30
  warm = f"{r['warmup_s']:.3f} s" if r['warmup_s'] is not None else 'none'
  return '\n'.join([
      f"framework    PyTorch {r['torch_version']}, transformers "
      f"{r['transformers_version']}, attention {r['attn_implementation']}",
      f"device       {r['device_kind']} ({r['platform']}), {r['threads']} threads, "
      f"{r['dtype']}",
      f"shape        batch {r['batch_size']} x length {r['max_len']}, "
      f"{r['micro_batches']} micro-batch(es); teacher {r['teacher_layers']} layers, "
      f"student {r['student_layers']}",
      f"first step   {warm} (warm-up, untimed)",
      f"step         {r['step_s']:.3f} s (median of {r['steps']}), "
      f"{r['step_s_min']:.3f} s (best)",
      f"throughput   {r['tokens_per_s']:.1f} tokens/s",
      f"model FLOPs  {r['flops_per_token'] / 1e6:.1f} MFLOP/token "
      f"(teacher fwd + 3 x student fwd)",
      f"matmul rate  {r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s measured (torch.mm)",
      f"MFU          {r['mfu']:.3f}",
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
      'attention_output_dropout': flags.DEFINE_bool(
          'attention_output_dropout', True,
          'Dropout after the attention output projection, as our student has '
          '(stock DistilBERT has none there).'),
      'keep_freed_memory': flags.DEFINE_bool(
          'keep_freed_memory', False,
          "Apply jaxdistil.host_memory's glibc settings before torch starts "
          '(off: stock PyTorch).'),
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
        f['attention_output_dropout'].value, f['keep_freed_memory'].value)
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
