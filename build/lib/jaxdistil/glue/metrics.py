"""GLUE metrics in NumPy, and the GLUE macro score.

Every metric takes predictions and references as 1-D arrays and returns a
Python float in the metric's own scale (accuracy and F1 in [0, 1], correlations
in [-1, 1]); the task scores and the macro score are in points (x100).

Conventions (chosen to agree with scikit-learn and SciPy):
- `mcc` is the multi-class Matthews correlation (Gorodkin's R_K, equal to the
  binary formula for two classes) and is 0.0 when undefined (a constant
  prediction or reference).
- `f1` is binary with class 1 as positive, and 0.0 when there are no true and
  no predicted positives.
- `pearson` and `spearman` are NaN when either side is constant; `spearman` is
  Pearson's r of the ranks, tied values sharing their average rank.

The macro score (Table 1 of Sanh et al., 2019, like the GLUE leaderboard) is the
unweighted mean over tasks of one score per task, where a task with several
metrics scores the mean of them: MRPC (F1, accuracy), QQP (accuracy, F1), STS-B
(Pearson, Spearman) and MNLI (matched accuracy, mismatched accuracy: one task,
one column, like the single MNLI column of the paper's Table 1). The paper's
DistilBERT row checks: the mean of its nine task columns is 77.01, reported as
77.0. (Its BERT-base row's nine columns average 79.7, not the 79.5 printed.)
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def _pair(predictions, references, dtype=None):
  p = np.asarray(predictions, dtype).ravel()
  r = np.asarray(references, dtype).ravel()
  if p.shape != r.shape:
    raise ValueError(f'{p.size} predictions for {r.size} references')
  if p.size == 0:
    raise ValueError('no examples to score')
  return p, r


def accuracy(predictions, references) -> float:
  p, r = _pair(predictions, references)
  return float(np.mean(p == r))


def _confusion(p, r) -> np.ndarray:
  classes, codes = np.unique(np.concatenate([r, p]), return_inverse=True)
  k = len(classes)
  true_codes, pred_codes = codes[:r.size], codes[r.size:]
  return np.bincount(true_codes * k + pred_codes, minlength=k * k).reshape(k, k)


def mcc(predictions, references) -> float:
  """Matthews correlation coefficient (any number of classes)."""
  p, r = _pair(predictions, references)
  c = _confusion(p, r).astype(np.float64)
  n = c.sum()
  correct = np.trace(c)
  true_totals, pred_totals = c.sum(axis=1), c.sum(axis=0)
  cov_pred = n * n - pred_totals @ pred_totals
  cov_true = n * n - true_totals @ true_totals
  if cov_pred == 0 or cov_true == 0:
    return 0.0
  return float((correct * n - true_totals @ pred_totals) /
               np.sqrt(cov_pred * cov_true))


def f1(predictions, references, positive=1) -> float:
  """Binary F1 of the `positive` class."""
  p, r = _pair(predictions, references)
  tp = np.sum((p == positive) & (r == positive))
  fp = np.sum((p == positive) & (r != positive))
  fn = np.sum((p != positive) & (r == positive))
  denominator = 2 * tp + fp + fn
  return 0.0 if denominator == 0 else float(2 * tp / denominator)


def pearson(predictions, references) -> float:
  x, y = _pair(predictions, references, np.float64)
  x = x - x.mean()
  y = y - y.mean()
  nx, ny = np.linalg.norm(x), np.linalg.norm(y)
  if nx == 0 or ny == 0:
    return float('nan')
  return float(np.clip(np.dot(x / nx, y / ny), -1.0, 1.0))


def average_ranks(values) -> np.ndarray:
  """1-based ranks; each group of tied values gets the mean of its ranks."""
  v = np.asarray(values).ravel()
  order = np.argsort(v, kind='stable')
  sorted_v = v[order]
  starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
  ends = np.r_[starts[1:], v.size]               # exclusive
  group_rank = (starts + 1 + ends) / 2.0         # mean of starts+1 .. ends
  sizes = ends - starts
  ranks = np.empty(v.size, np.float64)
  ranks[order] = np.repeat(group_rank, sizes)
  return ranks


def spearman(predictions, references) -> float:
  p, r = _pair(predictions, references, np.float64)
  return pearson(average_ranks(p), average_ranks(r))


METRICS = {'accuracy': accuracy, 'mcc': mcc, 'f1': f1, 'pearson': pearson,
           'spearman': spearman}


def compute(metric_names, predictions, references) -> dict:
  return {m: METRICS[m](predictions, references) for m in metric_names}


# ----------------------------------------------------------------------------
# Task and macro scores, in points

def task_score(metric_values: Mapping[str, float], keys=None) -> float:
  """One task's score in points: the mean of its metrics (x100)."""
  keys = list(metric_values) if keys is None else list(keys)
  return 100.0 * float(np.mean([metric_values[k] for k in keys]))


def macro_score(task_scores: Mapping[str, float | None]) -> float:
  """The unweighted mean of the task scores present (None = not run)."""
  present = [s for s in task_scores.values() if s is not None]
  if not present:
    return float('nan')
  return float(np.mean(present))
