"""The nine GLUE tasks: where their files are, which columns to read, how to score.

Each `Task` describes the standard `glue_data` layout (one folder per task with
`train.tsv` and one or more dev files) and the matching TensorFlow Datasets
config (`glue/<tfds_name>`). Text and label columns are named by their header
(position only for CoLA, whose train and dev files have no header).

Metrics per task are the GLUE ones: Matthews correlation for CoLA, F1 and
accuracy for MRPC and QQP, Pearson and Spearman for STS-B, accuracy elsewhere.
MNLI has two dev sets, matched and mismatched; each gets its own metric keys
(`accuracy_m`, `accuracy_mm`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence


class GlueError(ValueError):
  """Bad GLUE input (task, files, labels, dataset); the message is one line."""


@dataclasses.dataclass(frozen=True)
class DevSplit:
  name: str          # our name, e.g. 'dev', 'dev_matched'
  file: str          # file in the task folder, e.g. 'dev_matched.tsv'
  tfds_split: str    # e.g. 'validation_matched'
  suffix: str = ''   # appended to metric keys when a task has several dev sets


@dataclasses.dataclass(frozen=True)
class Task:
  name: str                       # 'SST-2': also the glue_data folder name
  tfds_name: str                  # 'sst2' -> TFDS 'glue/sst2'
  text_columns: tuple             # header names, or column indexes if no header
  label_column: str | int
  labels: tuple | None            # label strings as in the TSVs; None = regression
  metrics: tuple[str, ...]
  dev: tuple[DevSplit, ...] = (DevSplit('dev', 'dev.tsv', 'validation'),)
  train_file: str = 'train.tsv'
  has_header: bool = True
  tfds_text: tuple = ()           # TFDS feature names of the text columns
  tfds_labels: tuple | None = None  # TFDS ClassLabel names in TFDS's order
  # Rows with missing fields are skipped and counted rather than refused.
  skip_malformed: bool = False

  @property
  def is_regression(self) -> bool:
    return self.labels is None

  @property
  def num_outputs(self) -> int:
    return 1 if self.labels is None else len(self.labels)

  @property
  def is_pair(self) -> bool:
    return len(self.text_columns) == 2

  def metric_keys(self) -> tuple[str, ...]:
    """The keys of this task's dev results, e.g. ('f1', 'accuracy')."""
    return tuple(m + d.suffix for d in self.dev for m in self.metrics)


_DEV = (DevSplit('dev', 'dev.tsv', 'validation'),)

TASKS: dict[str, Task] = {t.name: t for t in (
    Task('CoLA', 'cola', text_columns=(3,), label_column=1, labels=('0', '1'),
         metrics=('mcc',), has_header=False, tfds_text=('sentence',),
         tfds_labels=('unacceptable', 'acceptable')),
    Task('SST-2', 'sst2', text_columns=('sentence',), label_column='label',
         labels=('0', '1'), metrics=('accuracy',), tfds_text=('sentence',),
         tfds_labels=('negative', 'positive')),
    Task('MRPC', 'mrpc', text_columns=('#1 String', '#2 String'),
         label_column='Quality', labels=('0', '1'), metrics=('f1', 'accuracy'),
         tfds_text=('sentence1', 'sentence2'),
         tfds_labels=('not_equivalent', 'equivalent')),
    Task('QQP', 'qqp', text_columns=('question1', 'question2'),
         label_column='is_duplicate', labels=('0', '1'),
         metrics=('accuracy', 'f1'), tfds_text=('question1', 'question2'),
         tfds_labels=('not_duplicate', 'duplicate'), skip_malformed=True),
    Task('STS-B', 'stsb', text_columns=('sentence1', 'sentence2'),
         label_column='score', labels=None, metrics=('pearson', 'spearman'),
         tfds_text=('sentence1', 'sentence2')),
    Task('MNLI', 'mnli', text_columns=('sentence1', 'sentence2'),
         label_column='gold_label',
         labels=('contradiction', 'entailment', 'neutral'),
         metrics=('accuracy',),
         dev=(DevSplit('dev_matched', 'dev_matched.tsv', 'validation_matched',
                       '_m'),
              DevSplit('dev_mismatched', 'dev_mismatched.tsv',
                       'validation_mismatched', '_mm')),
         tfds_text=('premise', 'hypothesis'),
         tfds_labels=('entailment', 'neutral', 'contradiction')),
    Task('QNLI', 'qnli', text_columns=('question', 'sentence'),
         label_column='label', labels=('entailment', 'not_entailment'),
         metrics=('accuracy',), tfds_text=('question', 'sentence'),
         tfds_labels=('entailment', 'not_entailment')),
    Task('RTE', 'rte', text_columns=('sentence1', 'sentence2'),
         label_column='label', labels=('entailment', 'not_entailment'),
         metrics=('accuracy',), tfds_text=('sentence1', 'sentence2'),
         tfds_labels=('entailment', 'not_entailment')),
    Task('WNLI', 'wnli', text_columns=('sentence1', 'sentence2'),
         label_column='label', labels=('0', '1'), metrics=('accuracy',),
         tfds_text=('sentence1', 'sentence2'),
         tfds_labels=('not_entailment', 'entailment')),
)}

# Table 1's column order (Sanh et al., 2019), which is alphabetical.
TABLE1_ORDER = ('CoLA', 'MNLI', 'MRPC', 'QNLI', 'QQP', 'RTE', 'SST-2', 'STS-B',
                'WNLI')

_ALIASES = {k.lower().replace('-', ''): k for k in TASKS}
_ALIASES.update({t.tfds_name: t.name for t in TASKS.values()})


def get(name: str) -> Task:
  """The task called `name` (case, '-' and the TFDS spelling do not matter)."""
  key = str(name).strip().lower().replace('-', '').replace('_', '')
  if key.startswith('glue/'):
    key = key[len('glue/'):]
  if key in _ALIASES:
    return TASKS[_ALIASES[key]]
  raise GlueError(f'unknown GLUE task {name!r}: valid tasks are '
                  f'{", ".join(TABLE1_ORDER)} (or all)')


def names(tasks: Sequence[Task]) -> list[str]:
  return [t.name for t in tasks]
