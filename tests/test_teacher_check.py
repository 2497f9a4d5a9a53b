"""A teacher checked against the training labels before it teaches
(`glue.teacher_check`, issue 32's fix 1).

- Its agreement with the gold labels is NumPy's accuracy (Pearson's r for a
  score), exactly.
- Outputs named LABEL_k are put in the order that agrees with the labels: a
  three-class teacher whose outputs are a permutation of MNLI's classes
  teaches the right targets (before the fix they were taken in order).
- A teacher whose order cannot be told, or whose config names another task,
  is refused in one line.
"""

import dataclasses

import numpy as np
import pytest

from jaxdistil.convert.classifier import ClassifierInfo
from jaxdistil.glue import distill_rows, tasks, teacher_check
from jaxdistil.glue.config import FinetuneConfig
from jaxdistil.glue.tasks import GlueError
from jaxdistil.glue.teacher import check_task


def teacher_logits(labels, order, n, right=0.8, seed=0):
  """Logits of a teacher right on `right` of the rows, whose output order[i]
  is class i."""
  rng = np.random.default_rng(seed)
  pred = np.where(rng.random(len(labels)) < right, labels,
                  rng.integers(0, n, len(labels)))
  logits = rng.normal(size=(len(labels), n)).astype(np.float32)
  logits[np.arange(len(labels)), np.asarray(order)[pred]] += 10.0
  return logits


def test_agreement_is_numpys_accuracy_and_pearson():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 3, 200)
  logits = teacher_logits(labels, (0, 1, 2), 3)
  want = np.mean(logits.argmax(-1) == labels)
  assert teacher_check.agreement(logits, labels, False) == want
  scores = rng.normal(size=50)
  out = (2 * scores + rng.normal(size=50))[:, None]
  assert teacher_check.agreement(out, scores, True) == pytest.approx(
      np.corrcoef(out[:, 0], scores)[0, 1], abs=1e-12)


@pytest.mark.parametrize('order', [(0, 1, 2), (1, 2, 0), (2, 0, 1), (1, 0, 2)])
def test_generic_names_are_ordered_by_the_data(order):
  rng = np.random.default_rng(2)
  labels = rng.integers(0, 3, 300)
  logits = teacher_logits(labels, order, 3)
  got, agree = teacher_check.label_order(logits, labels, 'teacher')
  assert got == order
  assert agree == np.mean(logits[:, list(order)].argmax(-1) == labels)


def test_an_order_that_cannot_be_told_is_refused_in_one_line():
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 3, 300)
  noise = rng.normal(size=(300, 3))
  with pytest.raises(GlueError) as e:
    teacher_check.label_order(noise, labels, '--teacher=t')
  assert 'cannot be told' in str(e.value) and '\n' not in str(e.value)


class Teacher:
  """A teacher callable as `glue.teacher.make_teacher` gives, on fixed logits."""

  def __init__(self, logits, generic):
    self.logits, self.generic, self.path = logits, generic, 'teacher'

  def __call__(self, examples, split):
    return self.logits


def test_a_scrambled_three_class_teacher_teaches_the_right_classes(capsys):
  """MNLI's TSV order is (contradiction, entailment, neutral); a teacher
  named LABEL_0..2 in another order (here HF's entailment, neutral,
  contradiction) used to teach scrambled targets."""
  task = tasks.get('MNLI')
  rng = np.random.default_rng(4)
  labels = rng.integers(0, 3, 400).astype(np.int32)
  order = (2, 0, 1)          # class i (TSV order) is output order[i]
  logits = teacher_logits(labels, order, 3, right=0.85)
  data = dataclasses.make_dataclass('D', ['train', 'train_examples'])(
      {'labels': labels, 'input_ids': np.zeros((400, 4), np.int32)}, None)
  out, found = distill_rows.with_teacher(
      task, data, Teacher(logits, True), None, None, FinetuneConfig(), None)
  taught = out.train['teacher_logits'].argmax(-1)
  assert found.order == order
  assert np.mean(taught == labels) == found.agreement > 0.8
  assert 'agreement with the gold training labels' in capsys.readouterr().out
  # Named heads keep their order, and report their agreement as it is.
  out, found = distill_rows.with_teacher(
      task, data, Teacher(logits, False), None, None, FinetuneConfig(), None)
  assert found.order is None
  assert found.agreement == np.mean(logits.argmax(-1) == labels) < 0.2
  # Online, the step runs the head as it is: a reordering is refused.
  with pytest.raises(GlueError, match='--kd_online cannot apply'):
    distill_rows.with_teacher(task, data, Teacher(logits, True), None, None,
                              FinetuneConfig(), None, online=True)


def test_a_teacher_fine_tuned_on_another_task_is_refused():
  info = ClassifierInfo(('unacceptable', 'acceptable'), task='cola')
  with pytest.raises(GlueError) as e:
    check_task(tasks.get('SST-2'), info, 'models/t')
  assert 'fine-tuned on CoLA' in str(e.value) and '\n' not in str(e.value)
  check_task(tasks.get('CoLA'), info, 'models/t')               # its own task
  check_task(tasks.get('SST-2'), ClassifierInfo(('a', 'b'), task='text-classification'),
             'models/t')                                         # not a GLUE name
