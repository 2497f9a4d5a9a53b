"""What `glue` does with no --lr, --epochs, --kd_temperature or --kd_alpha:
settings chosen from measurement, by the model's width and by whether a
teacher teaches (RESULTS.md, "Task distillation": the sweep that chose them).

- The learning rate: transformers' `run_glue` rate, 2e-5, is BERT-base's; a
  small model fine-tuned at it barely moves (a 3-layer, 384-wide student lost
  points against higher rates on SST-2 and MRPC, and the quick-start's 4-layer
  teacher scored Pearson -0.03 on STS-B). Models narrower than BERT-base
  (hidden < 768) get `SMALL_LR`, the sweep's best rate distilled (94.9% of
  the teacher against 92.1% at 2e-5) and within 0.2 points of its best alone
  (5e-5); BERT-base and wider keep 2e-5.
- With --teacher: the temperature, alpha and epochs of the sweep's best
  distilled setting (`DISTILL`): T 2 (T 4 and 8 within 0.3 points), alpha
  0.9, and 10 epochs, the largest lever measured (96.97% of the teacher
  against 94.9% at 3 epochs); a transfer set's rows always get the teacher's
  term alone (`glue.kd`).
- Without: 3 epochs, as `run_glue` and the paper.

A value given on the command line is always kept. The values used are in
every result's `config`, and `fill` names the defaulted ones in one line.
"""

from __future__ import annotations

WIDE = 768               # hidden size from which BERT-base's rate applies
WIDE_LR = 2e-5           # transformers' run_glue, BERT's paper grid
SMALL_LR = 1e-4          # the sweep's best for the 3-layer, 384-wide student
PLAIN_EPOCHS = 3.0
DISTILL = {'epochs': 10.0, 'kd_temperature': 2.0, 'kd_alpha': 0.9}


def learning_rate(hidden_size: int | None) -> float:
  """By width; a model of unknown width gets BERT-base's rate."""
  return SMALL_LR if hidden_size is not None and hidden_size < WIDE else WIDE_LR


def values(hidden_size: int | None, distill: bool) -> dict:
  """The default of each setting for a model of this width."""
  out = {'lr': learning_rate(hidden_size), 'epochs': PLAIN_EPOCHS}
  if distill:
    out.update(DISTILL)
  return out


def fill(args, hidden_size: int | None, distill: bool) -> str | None:
  """Sets every one of lr, epochs, kd_temperature, kd_alpha that `args`
  leaves None; returns a one-line notice of those set (None if none)."""
  filled = []
  for name, value in values(hidden_size, distill).items():
    if getattr(args, name, None) is None:
      setattr(args, name, value)
      filled.append(f'--{name}={value:g}')
  for name in ('kd_temperature', 'kd_alpha'):       # unused without a teacher
    if getattr(args, name, None) is None:
      setattr(args, name, DISTILL[name])
  if not filled:
    return None
  who = (f'hidden size {hidden_size}' + (', with a teacher' if distill else ''))
  return f'defaults for this model ({who}): {" ".join(filled)}'
