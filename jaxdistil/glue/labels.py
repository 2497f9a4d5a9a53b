"""A task's label names, and a classifier's outputs matched to them.

Our fine-tuning numbers a task's classes as the TSVs do (`Task.labels`, by
index). A classifier made elsewhere names its outputs in `id2label`, in an order
of its own (MNLI's differs between releases). `match` finds, for each of the
task's classes, the output that names it, so that a head can be reordered to
the task's order (`convert.classifier.permute`) before it is scored or taught
from. Names match ignoring case, spaces, '-' and '_'; a class is known by its
name (`label_names`: TFDS's for the tasks whose TSVs say 0/1) or by its TSV
string. HF's generic names (LABEL_0, LABEL_1, ...) are taken in order, with a
notice. Anything else that does not resolve is a one-line `GlueError`.
"""

from __future__ import annotations

from jaxdistil.glue.tasks import GlueError, Task

REGRESSION_LABEL = 'score'


def label_names(task: Task) -> tuple[str, ...]:
  """The name of each class, in the task's order: TFDS's names where the TSVs
  hold 0/1 (SST-2: negative, positive), else the TSV labels themselves
  (MNLI: contradiction, entailment, neutral). A regression: ('score',)."""
  if task.is_regression:
    return (REGRESSION_LABEL,)
  if task.tfds_labels and all(l.isdigit() for l in task.labels):
    return tuple(task.tfds_labels[int(l)] for l in task.labels)
  return tuple(task.labels)


def _norm(name: str) -> str:
  return ''.join(c for c in str(name).lower() if c not in ' -_')


def match(task: Task, info, where: str = 'the model') -> tuple[list[int], str | None]:
  """(order, notice): output `order[i]` of the classifier described by `info`
  (a `convert.classifier.ClassifierInfo`) is the task's class i; `notice` is
  a line to show when the order was assumed rather than read."""
  kind = lambda regression, n: ('a regression (1 output)' if regression
                                else f'{n} classes')
  if info.is_regression != task.is_regression or (
      info.num_labels != task.num_outputs):
    raise GlueError(
        f'{where} is a classifier for {kind(info.is_regression, info.num_labels)}'
        f'{" (" + info.task + ")" if info.task else ""}, but {task.name} is '
        f'{kind(task.is_regression, task.num_outputs)}: give a model fine-tuned '
        f'on {task.name}')
  if task.is_regression:
    return [0], None
  if info.generic:
    return list(range(task.num_outputs)), (
        f'{where} names its outputs {", ".join(info.labels)}: taken in order as '
        f'{task.name}\'s {", ".join(label_names(task))}')
  theirs = [_norm(l) for l in info.labels]
  order = []
  for i, (name, tsv) in enumerate(zip(label_names(task), task.labels)):
    found = [j for j, t in enumerate(theirs) if t in (_norm(name), _norm(tsv))]
    if len(found) != 1:
      raise GlueError(
          f'{where}\'s labels ({", ".join(info.labels)}) do not match '
          f'{task.name}\'s ({", ".join(label_names(task))}): '
          f'{"no" if not found else "more than one"} output is {name!r}; fix '
          f'id2label in its config.json')
    order.append(found[0])
  return order, None
