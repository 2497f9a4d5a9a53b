"""Local text sources -> a stream of documents (strings), for the tokenizer.

Three formats:
- plain text: documents separated by blank lines (whitespace-only lines count as
  blank); the lines of a document are joined with single spaces;
- WikiExtractor output: `<doc id=... url=... title=...>` ... `</doc>`; the first
  line of a block repeats the title and is not part of the body; documents whose
  body is empty (title-only stubs) are dropped; text outside blocks is ignored;
- Project Gutenberg books: only the text strictly between the `*** START OF` and
  `*** END OF` marker lines (any spacing or case; older books write `***START
  OF`, or end with "End of the Project Gutenberg Etext ..."), split into
  paragraphs as plain text is. Paragraphs rather than whole
  books: `prepare` cuts long documents into sequences anyway, and paragraph
  boundaries are where sentences end.

Files are read in sorted path order, streamed line by line, as UTF-8 with
replacement characters for undecodable bytes.

A source written `tfds:NAME[:SPLIT[:FEATURE]]` (for example
`tfds:wikipedia/20230601.en:train:text`) reads a TensorFlow Datasets dataset
already built in `tfds_data_dir`; it is never downloaded here (Wikipedia takes
hours to build), and an unbuilt one gets one line saying what to run.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
from typing import Iterable, Iterator

FORMATS = ('auto', 'text', 'wikiextractor', 'gutenberg')
_START = re.compile(r'^\s*\*\*\*\s*START OF', re.IGNORECASE)
# Older books close with "End of (the) Project Gutenberg Etext of ..." instead
# of (or just before) the *** END OF marker; either ends the book.
_END = re.compile(r'^\s*(\*\*\*\s*END OF|End of (the |this )?Project Gutenberg)',
                  re.IGNORECASE)
_DOC_OPEN = re.compile(r'^\s*<doc(\s|>)')
_DOC_CLOSE = re.compile(r'^\s*</doc>\s*$')


def parse_text(lines: Iterable[str]) -> Iterator[str]:
  """Blank-line separated documents, each joined into one line."""
  doc: list[str] = []
  for line in lines:
    line = line.strip()
    if line:
      doc.append(line)
    elif doc:
      yield ' '.join(doc)
      doc = []
  if doc:
    yield ' '.join(doc)


def parse_wikiextractor(lines: Iterable[str]) -> Iterator[str]:
  """Bodies of `<doc>` blocks (title line dropped); empty bodies skipped."""
  inside, title_seen, body = False, False, []
  for line in lines:
    if not inside:
      if _DOC_OPEN.match(line):
        inside, title_seen, body = True, False, []
      continue
    if _DOC_CLOSE.match(line):
      text = ' '.join(body)
      if text:
        yield text
      inside = False
      continue
    line = line.strip()
    if not line:
      continue
    if not title_seen:
      title_seen = True           # WikiExtractor repeats the title first
      continue
    body.append(line)


def parse_gutenberg(lines: Iterable[str], name: str = '<lines>') -> Iterator[str]:
  """Paragraphs of the text between the START and END markers."""
  it = iter(lines)
  for line in it:
    if _START.match(line):
      break
  else:
    raise ValueError(f"{name}: no '*** START OF' marker: not a Project Gutenberg "
                     f"book? Use --format=text for plain text")

  def body():
    for line in it:
      if _END.match(line):
        return
      yield line

  yield from parse_text(body())


def detect_format(path: str) -> str:
  """'wikiextractor' if the first non-blank line opens a <doc>, 'gutenberg' if a
  START marker is in the first 1,000 lines, else 'text'."""
  first = None
  with open(path, encoding='utf-8', errors='replace') as f:
    for i, line in enumerate(f):
      if first is None and line.strip():
        first = line
        if _DOC_OPEN.match(line):
          return 'wikiextractor'
      if _START.match(line):
        return 'gutenberg'
      if i >= 1000:
        break
  return 'text'


def list_files(patterns) -> list[str]:
  """Sorted files matching the glob(s); a pattern matching nothing is an error."""
  if isinstance(patterns, str):
    patterns = [patterns]
  files: set[str] = set()
  for pattern in patterns:
    matched = [p for p in glob.glob(os.path.expanduser(pattern), recursive=True)
               if os.path.isfile(p)]
    if not matched:
      raise ValueError(f'no files match {pattern!r}: check the path')
    files.update(matched)
  return sorted(files)


def read_tfds(spec: str, data_dir: str | None = None) -> Iterator[str]:
  """Documents from `tfds:NAME[:SPLIT[:FEATURE]]` (split train, feature text)."""
  import tensorflow_datasets as tfds      # heavy: only for TFDS sources
  parts = spec[len('tfds:'):].split(':')
  name = parts[0]
  split = parts[1] if len(parts) > 1 and parts[1] else 'train'
  feature = parts[2] if len(parts) > 2 and parts[2] else 'text'
  try:
    ds, info = tfds.load(name, split=split, data_dir=data_dir, download=False,
                         with_info=True)
  except (AssertionError, tfds.core.registered.DatasetNotFoundError,
          FileNotFoundError, ValueError) as e:
    where = data_dir or '~/tensorflow_datasets'
    if isinstance(e, tfds.core.registered.DatasetNotFoundError):
      raise ValueError(f'TFDS has no dataset {name!r}: check the name '
                       f'(e.g. wikipedia/20230601.en)') from None
    raise ValueError(
        f'TFDS dataset {name!r} split {split!r} is not built in {where} and is not '
        f'downloaded here: run `tfds build {name} --data_dir=DIR` on a machine '
        f'with network access, then pass --tfds_data_dir=DIR') from None
  if feature not in info.features:
    raise ValueError(f'TFDS dataset {name!r} has no feature {feature!r}: it has '
                     f'{sorted(info.features)}')
  return _tfds_documents(ds, feature)


def _tfds_documents(ds, feature: str) -> Iterator[str]:
  for example in ds.as_numpy_iterator():
    text = example[feature]
    text = (text.decode('utf-8', 'replace') if isinstance(text, bytes)
            else str(text)).strip()
    if text:
      yield text


def read_documents(patterns, fmt: str = 'auto',
                   tfds_data_dir: str | None = None) -> Iterator[str]:
  """Documents from every file matching `patterns`, in sorted path order, then
  from each `tfds:` source in the order given."""
  if fmt not in FORMATS:
    raise ValueError(f'unknown format {fmt!r}: use one of {", ".join(FORMATS)}')
  if isinstance(patterns, str):
    patterns = [patterns]
  datasets = [read_tfds(p, tfds_data_dir) for p in patterns if p.startswith('tfds:')]
  globs = [p for p in patterns if not p.startswith('tfds:')]
  if not globs:
    return itertools.chain.from_iterable(datasets)
  files = list_files(globs)         # fail now, before the caller starts work
  for path in files:
    if os.path.getsize(path) == 0:
      raise ValueError(f'{path} is empty: remove it from the sources')
  return itertools.chain(_documents(files, fmt),
                         itertools.chain.from_iterable(datasets))


def _documents(files: list[str], fmt: str) -> Iterator[str]:
  for path in files:
    kind = detect_format(path) if fmt == 'auto' else fmt
    with open(path, encoding='utf-8', errors='replace') as f:
      if kind == 'wikiextractor':
        yield from parse_wikiextractor(f)
      elif kind == 'gutenberg':
        yield from parse_gutenberg(f, path)
      else:
        yield from parse_text(f)
