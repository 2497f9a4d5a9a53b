"""GLUE examples from `glue_data` TSV folders or from TensorFlow Datasets, and
their tokenisation into fixed-length NumPy arrays (`lengths` gives each row's
real token count, by which fine-tuning cuts its batches to length buckets).

The TSVs are read as plain tab-separated lines, never with CSV quoting: SST-2,
QQP and MRPC hold quote characters that belong to the text (an MRPC sentence
may start with an unbalanced `"`), and a CSV reader would join lines. Other
quirks of the released files:

- CoLA's train and dev files have no header; columns are source, label,
  original judgement mark, sentence.
- MRPC's header line starts with a UTF-8 byte-order mark (read as `utf-8-sig`).
- QQP's train file has rows with missing fields; those are skipped and counted
  (`Examples.skipped`) instead of refused.
- MNLI has a dozen columns (parses, annotator labels); only `sentence1`,
  `sentence2` and `gold_label` are read, by header name.

Only `\\n` ends a line (text may hold other Unicode line separators); a trailing
`\\r` is dropped and blank lines are ignored.

TFDS (`glue/<config>`) is read with `tfds.builder(...).as_dataset` from an
already built `data_dir`; nothing is ever downloaded.

Over 300 lines on purpose: the TSV and TFDS readers of the nine tasks share
the row checks (one line per bad row) and the tokenisation into arrays.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Iterator, Sequence

import numpy as np

from jaxdistil.glue.tasks import GlueError, Task
from jaxdistil.models.config import ROBERTA_FAMILIES

TRAIN = 'train'


@dataclasses.dataclass
class Examples:
  """One split of one task: texts, labels (class index or float score)."""
  text_a: list[str]
  text_b: list[str] | None
  labels: np.ndarray          # int32 class indexes, or float32 scores
  origin: str                 # the file, or 'tfds:glue/x[split]'
  skipped: int = 0            # malformed rows skipped (QQP only)

  def __len__(self) -> int:
    return len(self.text_a)

  def take(self, index: np.ndarray) -> 'Examples':
    index = np.asarray(index)
    return Examples([self.text_a[i] for i in index],
                    None if self.text_b is None else [self.text_b[i] for i in index],
                    self.labels[index], self.origin, self.skipped)


def subsample(examples: Examples, max_examples: int | None, seed: int) -> Examples:
  """The random subset of `max_examples` rows (in their file order) that
  fine-tuning trains on, drawn by `seed`; all of them when None or fewer.
  The one place it is drawn: `glue` and `augment` must agree on it, or a
  transfer set would not line up with its task's training rows."""
  if max_examples and len(examples) > max_examples:
    pick = np.random.default_rng(seed).choice(len(examples), max_examples,
                                              replace=False)
    return examples.take(np.sort(pick))
  return examples


def split_names(task: Task) -> tuple[str, ...]:
  return (TRAIN,) + tuple(d.name for d in task.dev)


def _dev(task: Task, split: str):
  for d in task.dev:
    if d.name == split:
      return d
  raise GlueError(f'{task.name} has no split {split!r}: use one of '
                  f'{", ".join(split_names(task))}')


# ----------------------------------------------------------------------------
# glue_data TSV folders

def task_dir(task: Task, data_dir: str) -> str:
  """`data_dir/<Task>` if it exists, else `data_dir` itself when it holds the
  task's train file (pointing straight at one task's folder also works)."""
  sub = os.path.join(data_dir, task.name)
  if os.path.isdir(sub):
    return sub
  if os.path.isfile(os.path.join(data_dir, task.train_file)):
    return data_dir
  return sub


def split_path(task: Task, data_dir: str, split: str) -> str:
  file = task.train_file if split == TRAIN else _dev(task, split).file
  return os.path.join(task_dir(task, data_dir), file)


def missing_files(task: Task, data_dir: str) -> list[str]:
  return [p for p in (split_path(task, data_dir, s) for s in split_names(task))
          if not os.path.isfile(p)]


def check_files(task: Task, data_dir: str) -> None:
  missing = missing_files(task, data_dir)
  if missing:
    files = ', '.join([task.train_file] + [d.file for d in task.dev])
    raise GlueError(
        f'{task.name}: {", ".join(missing)} not found; expected the glue_data '
        f'layout {os.path.join(data_dir, task.name)}/{{{files}}}')


def tasks_present(data_dir: str, tasks: Sequence[Task]) -> list[Task]:
  """The tasks whose train and dev files are all in `data_dir`."""
  return [t for t in tasks if not missing_files(t, data_dir)]


def _lines(path: str) -> Iterator[tuple[int, list[str]]]:
  """(line number, tab-separated fields) of every non-blank line."""
  with open(path, encoding='utf-8-sig', newline='\n') as f:
    for lineno, line in enumerate(f, 1):
      line = line.rstrip('\n')
      if line.endswith('\r'):
        line = line[:-1]
      if line.strip():
        yield lineno, line.split('\t')


def _column_indexes(task: Task, header: list[str] | None, path: str) -> list[int]:
  wanted = list(task.text_columns) + [task.label_column]
  if header is None:
    return [int(c) for c in wanted]
  names = [h.strip() for h in header]
  missing = [c for c in wanted if c not in names]
  if missing:
    raise GlueError(f'{path}: header has no column {missing[0]!r} (it has '
                    f'{names}); is this the {task.name} file from glue_data?')
  return [names.index(c) for c in wanted]


def parse_label(task: Task, raw: str, where: str):
  raw = raw.strip()
  if task.is_regression:
    try:
      value = float(raw)
    except ValueError:
      value = float('nan')
    if not np.isfinite(value):
      raise GlueError(f'{where}: label {raw!r} is not a number ({task.name} is '
                      f'a regression task)')
    return value
  if raw not in task.labels:
    raise GlueError(f'{where}: label {raw!r} is not a {task.name} label '
                    f'(expected one of {list(task.labels)})')
  return task.labels.index(raw)


def read_tsv(task: Task, data_dir: str, split: str) -> Examples:
  """One split of a glue_data folder, quirks handled (see the module doc)."""
  path = split_path(task, data_dir, split)
  if not os.path.isfile(path):
    check_files(task, data_dir)
  rows = _lines(path)
  header = None
  if task.has_header:
    first = next(rows, None)
    if first is None:
      raise GlueError(f'{path}: the file is empty')
    header = first[1]
  cols = _column_indexes(task, header, path)
  need = max(cols) + 1
  texts: list[list[str]] = [[] for _ in task.text_columns]
  labels, skipped = [], 0
  for lineno, fields in rows:
    if len(fields) < need:
      if task.skip_malformed:
        skipped += 1
        continue
      raise GlueError(f'{path}:{lineno}: {len(fields)} tab-separated fields, '
                      f'{task.name} needs at least {need}')
    for out, c in zip(texts, cols[:-1]):
      out.append(fields[c])
    labels.append(parse_label(task, fields[cols[-1]], f'{path}:{lineno}'))
  dtype = np.float32 if task.is_regression else np.int32
  return Examples(texts[0], texts[1] if task.is_pair else None,
                  np.asarray(labels, dtype), path, skipped)


# ----------------------------------------------------------------------------
# TensorFlow Datasets

TFDS_PREFIX = 'tfds:'


def tfds_name(task: Task) -> str:
  return f'glue/{task.tfds_name}'


def _tfds_label_map(task: Task, names: Sequence[str]) -> np.ndarray:
  """TFDS class index -> our class index (by name when the names are ours,
  else by position: TFDS's binary classes are in the TSVs' 0/1 order)."""
  names = list(names)
  if set(names) <= set(task.labels):
    return np.asarray([task.labels.index(n) for n in names], np.int32)
  if len(names) == len(task.labels):
    return np.arange(len(names), dtype=np.int32)
  raise GlueError(f'TFDS {tfds_name(task)} has classes {names}, which do not '
                  f'match {task.name}\'s {list(task.labels)}')


def read_tfds(task: Task, split: str, data_dir: str | None = None) -> Examples:
  """One split of TFDS `glue/<config>`, which must already be built."""
  import tensorflow_datasets as tfds   # heavy: import late

  name = tfds_name(task)
  tfds_split = 'train' if split == TRAIN else _dev(task, split).tfds_split
  where = data_dir or '~/tensorflow_datasets'
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    ds = builder.as_dataset(split=tfds_split, shuffle_files=False)
  except Exception as e:  # AssertionError when unbuilt, others when corrupt
    first = (str(e).splitlines() or [type(e).__name__])[0]
    if 'download_and_prepare' in str(e) or 'could not find data' in str(e):
      raise GlueError(f'TFDS dataset {name} is not built in {where}: build it '
                      f'once with `tfds build {name} --data_dir={where}` '
                      f'(this tool never downloads)') from None
    raise GlueError(f'cannot read TFDS {name}[{tfds_split}] from {where}: '
                    f'{type(e).__name__}: {first}') from None
  label_map = None
  if not task.is_regression:
    feature = builder.info.features['label']
    label_map = _tfds_label_map(task, getattr(feature, 'names', None)
                                or task.tfds_labels)
  texts: list[list[str]] = [[] for _ in task.tfds_text]
  labels = []
  origin = f'{TFDS_PREFIX}{name}[{tfds_split}]'
  for i, ex in enumerate(tfds.as_numpy(ds)):
    for out, key in zip(texts, task.tfds_text):
      value = ex[key]
      out.append(value.decode('utf-8') if isinstance(value, bytes) else str(value))
    label = ex['label']
    if label_map is None:
      labels.append(float(label))
    else:
      if not 0 <= int(label) < len(label_map):
        raise GlueError(f'{origin} example {i}: label {int(label)} is not a '
                        f'{task.name} class (unlabelled test split?)')
      labels.append(int(label_map[int(label)]))
  dtype = np.float32 if task.is_regression else np.int32
  return Examples(texts[0], texts[1] if task.is_pair else None,
                  np.asarray(labels, dtype), origin)


def tfds_tasks_present(data_dir: str | None, tasks: Sequence[Task]) -> list[Task]:
  import tensorflow_datasets as tfds
  present = []
  for t in tasks:
    try:
      if tfds.builder(tfds_name(t), data_dir=data_dir).is_prepared():
        present.append(t)
    except Exception:   # an unknown or unreadable builder counts as absent
      pass
  return present


def read_split(task: Task, split: str, data_dir: str | None,
               source: str = 'tsv') -> Examples:
  if source == 'tsv':
    if not data_dir:
      raise GlueError('no data_dir: give the folder that holds the glue_data '
                      'task folders (CoLA/, SST-2/, ...)')
    return read_tsv(task, data_dir, split)
  if source == 'tfds':
    return read_tfds(task, split, data_dir)
  raise GlueError(f'unknown data source {source!r}: use tsv or tfds')


# ----------------------------------------------------------------------------
# Tokenisation

def pair_lengths(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
  """Longest-first truncation of a pair to `budget` tokens, as Hugging Face's
  fast tokenizers do it: a text no longer than half the budget is kept whole
  and the other one fills the rest; otherwise both get half, the longer text
  (the second on a tie) taking the odd token."""
  if len_a + len_b <= budget:
    return len_a, len_b
  if 2 * min(len_a, len_b) <= budget:
    return (len_a, budget - len_a) if len_a <= len_b else (budget - len_b, len_b)
  half = budget // 2
  return (half, budget - half) if len_a <= len_b else (budget - half, half)


def _wordpieces(tokenizer, texts: list[str]) -> list[list[int]]:
  return tokenizer(list(texts), add_special_tokens=False,
                   return_attention_mask=False,
                   return_token_type_ids=False)['input_ids']


STYLES = ('bert', 'roberta')


def style_of(family: str) -> str:
  """The `encode` style of a model of `family`: 'roberta' for RoBERTa's
  (`<s> a </s></s> b </s>`), else 'bert'."""
  return 'roberta' if family in ROBERTA_FAMILIES else 'bert'


def encode(examples: Examples, tokenizer, max_len: int = 128,
           style: str = 'bert') -> dict:
  """Fixed-length arrays, padded: `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`
  (style 'bert'), or RoBERTa's `<s> a </s>` and `<s> a </s></s> b </s>`
  (style 'roberta'), the special ids the tokenizer's own.

  Returns int32 `input_ids`, `attention_mask`, `token_type_ids` ([N, max_len];
  BERT: 0 for [CLS] a [SEP] and 1 for b [SEP]; RoBERTa, which has one token
  type: all 0) and `labels` ([N]).
  """
  from jaxdistil.data import tokenizer as tokenizer_lib
  if style not in STYLES:
    raise GlueError(f'unknown encoding style {style!r}: use one of {STYLES}')
  pair = examples.text_b is not None
  middle = [1] if style == 'bert' else [1, 1]     # separators between a and b
  if max_len < (2 + len(middle) if pair else 2):
    raise GlueError(f'max_len={max_len} leaves no room for text')
  ids_of = tokenizer_lib.special_ids(tokenizer)
  cls, sep, pad = ids_of['cls'], ids_of['sep'], ids_of['pad']
  pieces_a = _wordpieces(tokenizer, examples.text_a)
  pieces_b = _wordpieces(tokenizer, examples.text_b) if pair else None
  n = len(pieces_a)
  ids = np.full((n, max_len), pad, np.int32)
  mask = np.zeros((n, max_len), np.int32)
  types = np.zeros((n, max_len), np.int32)
  for i in range(n):
    a = pieces_a[i]
    if pair:
      b = pieces_b[i]
      ka, kb = pair_lengths(len(a), len(b), max_len - 1 - len(middle) - 1)
      first = [cls] + a[:ka] + [sep] * len(middle)
      row = first + b[:kb] + [sep]
      if style == 'bert':
        types[i, len(first):len(row)] = 1
    else:
      row = [cls] + a[:max_len - 2] + [sep]
    ids[i, :len(row)] = row
    mask[i, :len(row)] = 1
  return {'input_ids': ids, 'attention_mask': mask, 'token_type_ids': types,
          'labels': examples.labels}


def lengths(encoded: dict) -> np.ndarray:
  """Each encoded row's real token count ([CLS] ... [SEP], padding excluded).

  Rows are left-aligned, so `input_ids[:, :L]` holds every real token of a
  row whose length is at most L: a batch can be cut to any such L."""
  return encoded['attention_mask'].sum(axis=1).astype(np.int64)


def encode_dev(task: Task, data_dir, tokenizer, max_len: int, source: str,
               style: str) -> dict:
  """Each dev split of `task`, encoded: {split name: arrays}. An empty one is
  refused."""
  out = {}
  for d in task.dev:
    dev = read_split(task, d.name, data_dir, source)
    if len(dev) == 0:
      raise GlueError(f'{dev.origin}: no dev examples')
    out[d.name] = encode(dev, tokenizer, max_len, style)
  return out


def check_vocab(encoded: Iterable[dict], vocab_size: int) -> None:
  """One-line `GlueError` when the encoded arrays hold a token id the model
  has no embedding for (tokenizer and model do not match)."""
  top = max(int(e['input_ids'].max()) for e in encoded)
  if top >= vocab_size:
    raise GlueError(f'the tokenizer gives token id {top} but the model has '
                    f'{vocab_size} embeddings: tokenizer and model do not match')
