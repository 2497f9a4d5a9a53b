"""`FinetuneConfig`: every setting of GLUE fine-tuning (and of task
distillation), with the defaults of transformers' `run_glue` and the paper."""

from __future__ import annotations

import dataclasses

from jaxdistil import optim
from jaxdistil.glue import kd


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
  learning_rate: float = 2e-5
  batch_size: int = 32
  epochs: float = 3.0
  max_len: int = 128
  max_steps: int | None = None      # overrides epochs when set
  warmup_fraction: float = 0.06
  weight_decay: float = 0.01
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  clip_norm: float = 1.0
  head_dropout: float = 0.1
  eval_batch_size: int = 128
  max_train_examples: int | None = None   # random subset of train (smoke runs)
  length_buckets: bool | tuple = True     # False: pad to max_len; or lengths
  mesh: tuple = (('data', -1),)           # {'data': d, 'fsdp': f, 'tensor': t}
  # Task distillation (`glue.kd`), on when a teacher's logits are given: T,
  # the teacher's weight against the labels (alpha: classes; beta: a score).
  distill: bool = False
  kd_temperature: float = kd.TEMPERATURE
  kd_alpha: float = kd.ALPHA
  kd_beta: float = kd.BETA
  # TinyBERT's stage 1 first (`glue.stage1`), this many steps,
  # at its own peak rate (TinyBERT's 5e-5 with batch 32).
  kd_intermediate_steps: int = 0
  kd_intermediate_lr: float = 5e-5

  def settings(self) -> dict:
    """The settings a result records (and a top-up compares); the
    distillation ones only when distilling, so that results of plain
    fine-tuning read the same as before they existed."""
    out = {**dataclasses.asdict(self), 'mesh': dict(self.mesh)}
    if not self.distill:
      for k in ('distill', 'kd_temperature', 'kd_alpha', 'kd_beta',
                'kd_intermediate_steps'):
        del out[k]
    if not (self.distill and self.kd_intermediate_steps):
      del out['kd_intermediate_lr']          # as before the stage had its own
    return out

  def optim_config(self) -> optim.OptimConfig:
    return optim.OptimConfig(
        learning_rate=self.learning_rate, b1=self.b1, b2=self.b2, eps=self.eps,
        weight_decay=self.weight_decay, warmup_fraction=self.warmup_fraction,
        clip_norm=self.clip_norm)
