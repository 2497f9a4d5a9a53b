"""A teacher checked against the data at hand, before it teaches.

A fine-tuned classifier brought from elsewhere may have been trained on
another task, or name its outputs LABEL_0, LABEL_1, ... (HF's defaults), which
says nothing of their order: MNLI's TSV order (contradiction, entailment,
neutral) is not HF's or TFDS's, so a three-class teacher read in order could
teach scrambled targets. The teacher's logits over the training rows are
computed anyway (they are its soft targets), and so is its agreement with
the gold labels: the share of rows whose argmax is the label (for a
regression, Pearson's r with the scores). It is reported with every result.

For a head whose names are generic, the order is read from the data: of
every assignment of outputs to classes, the one that agrees best, provided it
beats the next best by `MARGIN` and beats chance (1 / classes); otherwise the
teacher is refused in one line, since its order cannot be told.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from jaxdistil.glue.tasks import GlueError

MARGIN = 0.05          # how much better the chosen order must agree
MAX_CLASSES = 6        # permutations tried (6! = 720)


class Check(NamedTuple):
  agreement: float              # accuracy on the training labels, or Pearson r
  order: tuple[int, ...] | None # outputs chosen for the classes (generic names)
  examples: int


def agreement(logits: np.ndarray, labels: np.ndarray, regression: bool) -> float:
  """Accuracy of argmax against integer labels; Pearson's r for a score."""
  logits = np.asarray(logits, np.float64)
  if regression:
    s, y = logits.reshape(len(logits)), np.asarray(labels, np.float64)
    if s.std() == 0 or y.std() == 0:
      return 0.0
    return float(np.corrcoef(s, y)[0, 1])
  return float(np.mean(logits.argmax(-1) == np.asarray(labels)))


def label_order(logits: np.ndarray, labels: np.ndarray, where: str
                ) -> tuple[tuple[int, ...], float]:
  """(order, its agreement): output order[i] is class i, the assignment that
  agrees best with the labels; one-line GlueError when none clearly does."""
  n = logits.shape[-1]
  if n > MAX_CLASSES:
    raise GlueError(f'{where} names its {n} outputs LABEL_0..LABEL_{n - 1}, too '
                    f'many to find their order from the data: name them in '
                    f'id2label in its config.json')
  pred = np.asarray(logits).argmax(-1)
  labels = np.asarray(labels)
  # Under order o, output o[i] means class i: a row predicted as output j is
  # class o^-1[j].
  scored = []
  for order in itertools.permutations(range(n)):
    inverse = np.argsort(order)
    scored.append((float(np.mean(inverse[pred] == labels)), order))
  scored.sort(key=lambda x: -x[0])
  (best, order), second = scored[0], scored[1][0]
  if best < 1.0 / n + MARGIN or best - second < MARGIN:
    raise GlueError(
        f'{where} names its outputs LABEL_0..LABEL_{n - 1} and its order cannot '
        f'be told from the training labels (best order agrees on {best:.1%}, the '
        f'next on {second:.1%}): name its labels in id2label in its config.json')
  return tuple(int(i) for i in order), best


def check(logits: np.ndarray, labels: np.ndarray, regression: bool,
          generic: bool, where: str) -> Check:
  """The teacher's `Check` over the training rows; for generic names, the
  order that agrees (`label_order`), else the head's order as it is."""
  if generic and not regression:
    order, agree = label_order(logits, labels, where)
    return Check(agree, order, len(labels))
  return Check(agreement(logits, labels, regression), None, len(labels))
