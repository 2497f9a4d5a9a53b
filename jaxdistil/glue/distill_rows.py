"""The training rows as a distillation step reads them: the teacher's logits
for every row ('teacher_logits'; none when an online teacher computes them in
the step), 'label_weights' (1 for labelled rows, 0 for a transfer set's, which
the teacher alone teaches), the transfer set encoded and appended; and the
teacher's check against the gold training labels (`glue.teacher_check`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxdistil.glue import data as glue_data
from jaxdistil.glue import teacher_check
from jaxdistil.glue.config import FinetuneConfig
from jaxdistil.glue.tasks import GlueError, Task
from jaxdistil.models import bert


def with_teacher(task: Task, task_data, teacher, transfer, tokenizer,
                 cfg: FinetuneConfig, bert_cfg: bert.BertConfig,
                 online: bool = False):
  """(task_data with the teacher's rows, the teacher's `Check`).

  The teacher's logits over the training rows are computed (or read from
  its cache) in either mode, for its check; they join the rows as
  'teacher_logits' unless `online` (the step computes them). Outputs named
  LABEL_k are put in the order that agrees with the labels; with `online`
  that order must be the head's own, since the step runs the head as it is.
  'label_weights' is 1 for labelled rows and 0 for the transfer set's
  (`transfer`, a `glue.augment.TransferSet`, checked to be made for this
  task from these training rows)."""
  if transfer is not None:          # before the teacher runs
    from jaxdistil.glue import augment
    augment.check_matches(transfer, task.name, task_data.train_examples,
                          f'--transfer_set={transfer.examples.origin[len("transfer:"):]}')
  train = dict(task_data.train)
  n = len(train['labels'])
  found = None
  if teacher is not None:
    logits = np.asarray(teacher(task_data.train_examples, glue_data.TRAIN),
                        np.float32)
    if len(logits) != n:
      raise GlueError(f'the teacher gave {len(logits)} rows of logits for {n} '
                      f'training examples')
    found = teacher_check.check(logits, train['labels'], task.is_regression,
                                getattr(teacher, 'generic', False),
                                f'--teacher={getattr(teacher, "path", "")}')
    report(found, task)
    if found.order is not None:
      if online and found.order != tuple(range(len(found.order))):
        raise GlueError(f'--teacher={teacher.path} names its outputs LABEL_k '
                        f'and the training labels put them in the order '
                        f'{found.order}, which --kd_online cannot apply: drop '
                        f'--kd_online, or name its labels in id2label')
      logits = logits[:, list(found.order)]
    if not online:
      train['teacher_logits'] = logits
  train['label_weights'] = np.ones(n, np.float32)
  if transfer is not None:
    transfer = transfer.examples
    if len(transfer) == 0:
      raise GlueError('the transfer set is empty: make it again, or drop it')
    extra = glue_data.encode(transfer, tokenizer, cfg.max_len,
                             glue_data.style_of(bert_cfg.family))
    if teacher is not None and not online:
      t = np.asarray(teacher(transfer, 'transfer'), np.float32)
      extra['teacher_logits'] = t[:, list(found.order)] if found.order else t
    extra['label_weights'] = np.zeros(len(transfer), np.float32)
    extra['labels'] = np.zeros_like(train['labels'], shape=(len(transfer),))
    train = {k: np.concatenate([train[k], extra[k]]) for k in train}
  return dataclasses.replace(task_data, train=train), found


def report(found: teacher_check.Check, task: Task) -> None:
  what = ("Pearson's r with the training scores" if task.is_regression
          else 'agreement with the gold training labels')
  value = (f'{found.agreement:.3f}' if task.is_regression
           else f'{found.agreement:.1%}')
  order = (f'; its LABEL_k outputs read as classes in the order {found.order}'
           if found.order is not None else '')
  print(f'jaxdistil.glue: the teacher\'s {what}: {value} over '
        f'{found.examples} examples{order}', flush=True)
