"""Sequence classifiers: the head's tensors and its labels, in and out of HF.

A classifier is an encoder plus a head (`glue.heads`' tree) plus what the
head's outputs mean: `ClassifierInfo` (the label names by output index, the
problem type, the task it was fine-tuned on). Hugging Face keeps the latter in
`config.json` as `id2label`/`label2id`, `problem_type` and `finetuning_task`;
a jaxdistil model directory keeps it in its `jaxdistil_model.json`.

`read_head` takes the head's tensors out of a checkpoint's names (the ones
`hf_in` would otherwise call unexpected); `head_tensors` writes them back;
`hf_fields` gives the config.json keys `transformers` reads for a classifier.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from jaxdistil.convert import names
from jaxdistil.convert.hf_files import ConvertError

REGRESSION = 'regression'
SINGLE_LABEL = 'single_label_classification'
GENERIC = re.compile(r'^LABEL_(\d+)$')


@dataclasses.dataclass(frozen=True)
class ClassifierInfo:
  labels: tuple[str, ...]              # the name of each output, by index
  problem_type: str = SINGLE_LABEL     # or 'regression' (one output, raw score)
  task: str | None = None              # the task it was fine-tuned on, if known

  @property
  def num_labels(self) -> int:
    return len(self.labels)

  @property
  def is_regression(self) -> bool:
    return self.problem_type == REGRESSION

  @property
  def generic(self) -> bool:
    """Labels named LABEL_0, LABEL_1, ... in order (HF's defaults)."""
    return all(GENERIC.match(l) and int(GENERIC.match(l).group(1)) == i
               for i, l in enumerate(self.labels))

  def to_dict(self) -> dict:
    return {'labels': list(self.labels), 'problem_type': self.problem_type,
            'task': self.task}

  @classmethod
  def from_dict(cls, d: dict) -> 'ClassifierInfo':
    return cls(tuple(d['labels']), d.get('problem_type') or SINGLE_LABEL,
               d.get('task'))


def info_from_hf(hf: dict, num_outputs: int, path: str) -> ClassifierInfo:
  """The labels of an HF classifier config; `num_outputs` is what its
  classifier tensor holds, which wins over a missing or default id2label."""
  id2label = hf.get('id2label') or {}
  try:
    by_id = {int(k): str(v) for k, v in id2label.items()}
  except (TypeError, ValueError):
    raise ConvertError(f'{path}: id2label has a non-integer id: '
                       f'{sorted(id2label)[:4]}') from None
  if sorted(by_id) != list(range(len(by_id))) or len(by_id) != num_outputs:
    if by_id and len(by_id) != num_outputs:
      raise ConvertError(f'{path}: id2label names {len(by_id)} labels but the '
                         f'classifier has {num_outputs} outputs: fix config.json')
    by_id = {i: f'LABEL_{i}' for i in range(num_outputs)}
  problem = hf.get('problem_type')
  if problem is None:
    # transformers' own rule: one output means regression
    problem = REGRESSION if num_outputs == 1 else SINGLE_LABEL
  if problem not in (REGRESSION, SINGLE_LABEL):
    raise ConvertError(f'{path}: problem_type={problem!r} is not supported; '
                       f'supported are {SINGLE_LABEL!r} and {REGRESSION!r}')
  return ClassifierInfo(tuple(by_id[i] for i in range(num_outputs)), problem,
                        hf.get('finetuning_task'))


def hf_fields(info: ClassifierInfo) -> dict:
  """config.json keys for a classifier with these labels."""
  out = {'id2label': {str(i): l for i, l in enumerate(info.labels)},
         'label2id': {l: i for i, l in enumerate(info.labels)},
         'problem_type': info.problem_type}
  if info.task:
    out['finetuning_task'] = info.task
  return out


def head_names(layout: str) -> set[str]:
  """Checkpoint names of the head (BERT's pooler not included: the encoder's)."""
  return {e.hf for e in names.classifier_entries(layout)
          if not e.hf.startswith('bert.pooler.')}


def read_head(layout: str, get, pooler: dict | None, where: str,
              hidden: int) -> dict:
  """Our head tree from the checkpoint, `get(name)` giving a tensor by its
  canonical (prefix-stripped) name. BERT's head takes the pooler."""
  head: dict = {}
  for e in names.classifier_entries(layout):
    if e.hf.startswith('bert.pooler.'):
      continue
    value = np.asarray(get(e.hf), np.float32)
    if e.split is not None:
      value = np.ascontiguousarray(value.T)
    node = head
    for k in e.ours[:-1]:
      node = node.setdefault(k, {})
    node[e.ours[-1]] = value
  if layout == 'bert':
    if pooler is None:
      raise ConvertError(f'{where}: a BertForSequenceClassification without '
                         f'its pooler (bert.pooler.dense): the checkpoint is '
                         f'incomplete')
    head['pooler'] = pooler
  first = head['out_proj' if 'out_proj' in head else 'classifier']['kernel']
  inner = [head[k]['kernel'] for k in ('pre_classifier', 'dense') if k in head]
  if first.shape[0] != hidden or any(k.shape != (hidden, hidden) for k in inner):
    raise ConvertError(f'{where}: the classifier head does not match hidden '
                       f'size {hidden}')
  return head


def num_outputs(head: dict) -> int:
  return int(head['out_proj' if 'out_proj' in head else 'classifier']['kernel']
             .shape[-1])


def head_tensors(layout: str, head: dict) -> dict[str, np.ndarray]:
  """The head as PyTorch-named float32 arrays, at the checkpoint's root
  (BERT's pooler under `bert.`). A head made for another layout is refused."""
  have = names.head_layout(head)
  family = 'roberta' if layout in ('roberta', 'xlm-roberta') else layout
  if have != family:
    raise ConvertError(
        f'a {have}-style classifier head cannot be written as '
        f'{names.CLASSIFIER_ARCHITECTURE[layout]} (it needs a '
        f'{family}-style head): export with the layout the model was '
        f'fine-tuned in')
  out = {}
  for e in names.classifier_entries(layout):
    node = head
    for k in e.ours:
      node = node[k]
    out[e.hf] = names.to_hf(e, np.asarray(node, np.float32))
  return out


def permute(head: dict, order) -> dict:
  """The head with its outputs reordered: output i of the result is output
  `order[i]` of `head`."""
  order = np.asarray(order)
  key = 'out_proj' if 'out_proj' in head else 'classifier'
  last = dict(head[key])
  last['kernel'] = np.asarray(last['kernel'])[:, order]
  last['bias'] = np.asarray(last['bias'])[order]
  return {**head, key: last}
