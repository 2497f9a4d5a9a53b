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
"""

from __future__ import annotations

import glob
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


def read_documents(patterns, fmt: str = 'auto') -> Iterator[str]:
  """Documents from every file matching `patterns`, in sorted path order."""
  if fmt not in FORMATS:
    raise ValueError(f'unknown format {fmt!r}: use one of {", ".join(FORMATS)}')
  files = list_files(patterns)      # fail now, before the caller starts work
  for path in files:
    if os.path.getsize(path) == 0:
      raise ValueError(f'{path} is empty: remove it from the sources')
  return _documents(files, fmt)


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
