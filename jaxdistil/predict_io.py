"""Input and output of `python -m jaxdistil.predict`: records read one at a
time from a file, and the result lines written to a file that appears only
when every line is in it.

Three input formats (`FORMATS`), each read as a stream, never whole:

- `jsonl`: one JSON object a line, `{"text": ..., "text_pair": ...}`
  (`text_pair` optional, per line); blank lines are skipped.
- `text`: one text a line, every line (a blank one is an empty text), so the
  output's line N is the input's line N.
- `tsv`: a GLUE task's TSV (its train/dev layout: the header names the text
  columns, or CoLA's column 3); the label column is not read, so unlabelled
  files with the same columns work too.

`auto` picks `tsv` when a task is given, `jsonl` for a `.jsonl`, `.ndjson` or
`.json` file name, and `text` otherwise. A bad record raises `InputError`,
whose one-line message names the file and line number.

`Output` writes to a hidden temporary file in the output's folder and, on
`commit`, links it to the output's name: an output that exists is refused
before any work unless `overwrite`, and a run that fails leaves nothing.

Between the two, `encode` turns records into the token arrays a runtime
takes, and `probabilities` its logits into the scores written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Iterator, Sequence

import numpy as np

FORMATS = ('auto', 'jsonl', 'text', 'tsv')


class InputError(ValueError):
  """Input that cannot be read, or an output that must not be written; the
  message is one line."""


@dataclasses.dataclass(frozen=True)
class Record:
  line: int                     # 1-based line number in the input file
  text: str
  text_pair: str | None = None


def resolve_format(fmt: str, path: str, task) -> str:
  if fmt != 'auto':
    if (fmt == 'tsv') != (task is not None):
      raise InputError('--format=tsv and --task go together: the task names '
                       'the TSV columns to read')
    return fmt
  if task is not None:
    return 'tsv'
  ext = os.path.splitext(path)[1].lower()
  return 'jsonl' if ext in ('.jsonl', '.ndjson', '.json') else 'text'


def _lines(path: str) -> Iterator[tuple[int, str]]:
  """(line number, line without its end) of every line, `\\n` ending a line."""
  try:
    with open(path, encoding='utf-8-sig', newline='\n') as f:
      for number, line in enumerate(f, 1):
        line = line.rstrip('\n')
        yield number, line[:-1] if line.endswith('\r') else line
  except UnicodeDecodeError as e:
    raise InputError(f'{path}: not UTF-8 text ({e.reason} at byte '
                     f'{e.start})') from None


def _jsonl(path: str) -> Iterator[Record]:
  for number, line in _lines(path):
    if not line.strip():
      continue
    where = f'{path}:{number}'
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      raise InputError(f'{where}: not valid JSON ({e.msg} at column '
                       f'{e.colno})') from None
    if not isinstance(obj, dict):
      raise InputError(f'{where}: expected a JSON object with a "text" field, '
                       f'got {type(obj).__name__}')
    if 'text' not in obj:
      raise InputError(f'{where}: no "text" field (the object has '
                       f'{sorted(obj)[:5]})')
    pair = obj.get('text_pair')
    for key, value in (('text', obj['text']), ('text_pair', pair)):
      if value is not None and not isinstance(value, str):
        raise InputError(f'{where}: "{key}" is {type(value).__name__}, not a '
                         f'string')
    yield Record(number, obj['text'], pair)


def _text(path: str) -> Iterator[Record]:
  for number, line in _lines(path):
    yield Record(number, line)


def _tsv(path: str, task) -> Iterator[Record]:
  lines = (x for x in _lines(path) if x[1].strip())
  columns = list(task.text_columns)
  if task.has_header:
    first = next(lines, None)
    if first is None:
      return
    names = [h.strip() for h in first[1].split('\t')]
    missing = [c for c in columns if c not in names]
    if missing:
      raise InputError(f'{path}:{first[0]}: the header has no column '
                       f'{missing[0]!r} (it has {names}): is this a '
                       f'{task.name} file?')
    columns = [names.index(c) for c in columns]
  need = max(int(c) for c in columns) + 1
  for number, line in lines:
    fields = line.split('\t')
    if len(fields) < need:
      raise InputError(f'{path}:{number}: {len(fields)} tab-separated fields, '
                       f'{task.name} needs at least {need}')
    texts = [fields[int(c)] for c in columns]
    yield Record(number, texts[0], texts[1] if len(texts) > 1 else None)


def records(path: str, fmt: str, task=None) -> Iterator[Record]:
  """The records of `path` in order, read lazily (`fmt` resolved)."""
  if not os.path.isfile(path):
    raise InputError(f'--input={path}: no such file')
  if fmt == 'jsonl':
    return _jsonl(path)
  if fmt == 'text':
    return _text(path)
  return _tsv(path, task)


def chunks(stream: Iterator[Record], size: int) -> Iterator[list[Record]]:
  """Lists of up to `size` consecutive records."""
  chunk = []
  for record in stream:
    chunk.append(record)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def result_rows(scores: np.ndarray, labels: Sequence[str],
                all_scores: bool) -> list:
  """What `pipeline('text-classification')` returns for each row of
  `scores` ([N, outputs], probabilities or raw regression scores): the top
  label and its score, or with `all_scores` every label's, highest first (as
  with `top_k=None`)."""
  out = []
  for row in np.asarray(scores, np.float32):
    if all_scores:
      order = sorted(range(len(row)), key=lambda i: -row[i])
      out.append([{'label': labels[i], 'score': float(row[i])} for i in order])
    else:
      best = int(row.argmax())
      out.append({'label': labels[best], 'score': float(row[best])})
  return out


class Output:
  """A JSONL file written whole or not at all (see the module doc)."""

  def __init__(self, path: str, overwrite: bool):
    self.path = os.path.abspath(path)
    self.overwrite = overwrite
    if os.path.isdir(self.path):
      raise InputError(f'--output={path} is a folder: give a file name')
    if os.path.exists(self.path) and not overwrite:
      raise InputError(f'--output={path} exists: pass --overwrite to replace it')
    folder = os.path.dirname(self.path)
    os.makedirs(folder, exist_ok=True)
    fd, self.tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.',
                                    suffix='.tmp', dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(self.tmp, 0o666 & ~umask)        # mkstemp's 0600 is not wanted
    self.file = os.fdopen(fd, 'w', encoding='utf-8')

  def write(self, rows: list) -> None:
    for row in rows:
      self.file.write(json.dumps(row, ensure_ascii=False) + '\n')

  def commit(self) -> None:
    """The output, complete, at its name (not replacing a file that appeared
    meanwhile unless `overwrite`)."""
    self.file.close()
    try:
      if self.overwrite:
        os.replace(self.tmp, self.path)
      else:
        try:
          os.link(self.tmp, self.path)
        except FileExistsError:
          raise InputError(f'--output={self.path} appeared while predicting: '
                           f'pass --overwrite to replace it') from None
    finally:
      if os.path.exists(self.tmp):
        os.unlink(self.tmp)

  def discard(self) -> None:
    if not self.file.closed:
      self.file.close()
    if os.path.exists(self.tmp):
      os.unlink(self.tmp)


def encode(records: Sequence[Record], tokenizer, max_len: int,
           style: str) -> dict:
  """Token arrays [N, max_len] of `records`, single texts and pairs mixed
  (`style`: 'bert' or 'roberta', as `glue.data.encode`)."""
  from jaxdistil.glue import data as glue_data
  n = len(records)
  arrays = {k: np.zeros((n, max_len), np.int32)
            for k in ('input_ids', 'attention_mask', 'token_type_ids')}
  is_pair = np.array([r.text_pair is not None for r in records])
  for pair in (False, True):
    index = np.flatnonzero(is_pair == pair)
    if not len(index):
      continue
    examples = glue_data.Examples(
        [records[i].text for i in index],
        [records[i].text_pair for i in index] if pair else None,
        np.zeros(len(index), np.int32), '')
    part = glue_data.encode(examples, tokenizer, max_len, style)
    for k in arrays:
      arrays[k][index] = part[k]
  return arrays


def probabilities(logits: np.ndarray, regression: bool) -> np.ndarray:
  """Softmax over the outputs, or a regression's raw scores."""
  if regression:
    return logits
  e = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)
