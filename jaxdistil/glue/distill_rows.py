"""The training rows as a distillation step reads them: the teacher's logits
for every row ('teacher_logits'; none when an online teacher computes them in
the step), 'label_weights' (1 for labelled rows, 0 for a transfer set's, which
the teacher alone teaches), the transfer set encoded and appended."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxdistil.glue import data as glue_data
from jaxdistil.glue.config import FinetuneConfig
from jaxdistil.glue.tasks import GlueError
from jaxdistil.models import bert


def with_teacher(task_data, teacher, transfer, tokenizer,
                 cfg: FinetuneConfig, bert_cfg: bert.BertConfig):
  """The training rows with the teacher's logits ('teacher_logits'; none
  when `teacher` is None: an online teacher computes them in the step) and
  'label_weights' (1 for labelled rows, 0 for the transfer set's)."""
  train = dict(task_data.train)
  n = len(train['labels'])
  if teacher is not None:
    train['teacher_logits'] = np.asarray(
        teacher(task_data.train_examples, glue_data.TRAIN), np.float32)
  train['label_weights'] = np.ones(n, np.float32)
  if transfer is not None:
    if len(transfer) == 0:
      raise GlueError('the transfer set is empty: make it again, or drop it')
    style = 'roberta' if bert_cfg.family in bert.ROBERTA_FAMILIES else 'bert'
    extra = glue_data.encode(transfer, tokenizer, cfg.max_len, style)
    if teacher is not None:
      extra['teacher_logits'] = np.asarray(teacher(transfer, 'transfer'),
                                           np.float32)
    extra['label_weights'] = np.zeros(len(transfer), np.float32)
    extra['labels'] = np.zeros_like(train['labels'], shape=(len(transfer),))
    train = {k: np.concatenate([train[k], extra[k]]) for k in train}
  if teacher is not None and len(train['teacher_logits']) != len(train['labels']):
    raise GlueError(f'the teacher gave {len(train["teacher_logits"])} rows of '
                    f'logits for {len(train["labels"])} training examples')
  return dataclasses.replace(task_data, train=train)
