"""Local text sources -> a stream of documents (strings), for the tokenizer.

Three formats, each parsed from an iterable of lines (so that a file is streamed
and tests can pass lists):
- plain text (`parse_text`): documents separated by blank lines (whitespace-only
  lines count as blank); the lines of a document are stripped and joined with
  single spaces, since the tokenizer treats a newline as a space anyway;
- WikiExtractor output (`parse_wikiextractor`): `<doc id=... url=... title=...>`
  ... `</doc>` blocks, attributes in any order; the first non-blank line of a block
  repeats the title and is not part of the body; documents whose body is empty
  (title-only stubs) are dropped; text outside blocks is ignored;
- Project Gutenberg books (`parse_gutenberg`): only the text strictly between the
  `*** START OF` and `*** END OF` marker lines (any case, any spacing after the
  asterisks: older books write `***START OF`), split into paragraphs as plain text
  is. Paragraphs rather than whole books, because `prepare` cuts long documents
  into sequences anyway and a paragraph ends where a sentence ends.

`read_documents(patterns, fmt)` reads every file matching the glob(s) (`**`
recurses) in sorted path order, streamed line by line, as UTF-8 with replacement
characters for undecodable bytes (a leading byte-order mark is dropped).
`detect_format(path)` picks the format for `fmt='auto'`.

A source written `tfds:NAME[:SPLIT[:FEATURE]]` (for example
`tfds:wikipedia/20230601.en:train:text`) reads a TensorFlow Datasets dataset
already built in `tfds_data_dir`; it is never downloaded here (Wikipedia takes
hours to build), and an unbuilt one gets one line saying what to run.
"""

from __future__ import annotations

import glob
import gzip
import itertools
import os
import re
from typing import Iterable, Iterator

FORMATS = ('auto', 'text', 'wikiextractor', 'gutenberg')
DETECT_LINES = 1000                 # auto: look for a START marker this far
# 'utf-8-sig' is UTF-8 that also drops a leading byte-order mark (101 of the 113
# shared books have one); otherwise it would stick to the first line.
ENCODING = 'utf-8-sig'

_START = re.compile(r'\*\*\*\s*START\s+OF', re.IGNORECASE)
# Where a book's text ends. Besides `*** END OF`, older books close with a line
# "End of (the) Project Gutenberg EBook/Etext of ...", most of them a few lines
# before their END marker (which would otherwise leave that line as a paragraph)
# and one (pg4657) with no END marker at all. That same book appends its licence
# under a repeat of the old header line "The Project Gutenberg Etext of ...";
# no book's own text starts a line like that.
_END = re.compile(r'\*\*\*\s*END\s+OF'
                  r'|^\s*End of (the |this )?Project Gutenberg'
                  r'|^\s*The Project Gutenberg (E-?text|E-?book) of',
                  re.IGNORECASE)
_DOC_OPEN = re.compile(r'^\s*<doc(\s|>)')
_DOC_CLOSE = re.compile(r'^\s*</doc>')
# A START marker whose title wraps onto the next lines (data_books_43-0 writes
# "*** START OF THIS PROJECT GUTENBERG EBOOK" / "THE STRANGE CASE ... ***") ends
# at the first of at most this many following lines that holds the closing `***`.
_MARKER_WRAP = 3


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


def _wiki_body(block: list[str]) -> str:
  """The body of one `<doc>` block's inner lines: all but the title, joined."""
  text = [line.strip() for line in block if line.strip()]
  return ' '.join(text[1:])         # text[0] repeats the title


def parse_wikiextractor(lines: Iterable[str]) -> Iterator[str]:
  """Bodies of `<doc>` blocks (title line dropped); empty bodies skipped."""
  block: list[str] | None = None    # None: outside any block
  for line in lines:
    opens = _DOC_OPEN.match(line)
    if opens or _DOC_CLOSE.match(line):
      # An open inside an open block means a `</doc>` went missing: end the
      # first block there rather than let the tag leak into its body.
      if block and (body := _wiki_body(block)):
        yield body
      block = [] if opens else None
    elif block is not None:
      block.append(line)
  if block and (body := _wiki_body(block)):   # unclosed at the end
    yield body


def _find_start(it: Iterator[str], name: str) -> str:
  """Consume lines up to and including the START marker line; return it."""
  for line in it:
    if _START.search(line):
      return line
  raise ValueError(f"{name}: no '*** START OF' marker: not a Project Gutenberg "
                   f"book? Use --format=text for plain text")


def _after_marker(marker: str, it: Iterator[str]) -> Iterator[str]:
  """The lines after a START marker line, without the rest of a wrapped marker.

  A marker that closes on its own line (`*** START OF ... ***`) is done. One that
  does not may wrap: the next non-blank lines, up to the one holding `***`, are
  still the marker. If no such line comes before a blank line (or within
  _MARKER_WRAP lines), the marker merely lacked its closing asterisks, and the
  lines looked at are text: give them back.
  """
  if '***' in marker[_START.search(marker).end():]:
    return it
  ahead: list[str] = []
  for line in it:
    ahead.append(line)
    if not line.strip() or len(ahead) > _MARKER_WRAP:
      break
    if '***' in line:
      return it
  return itertools.chain(ahead, it)


def _until_end(it: Iterable[str]) -> Iterator[str]:
  """Lines up to, not including, the first end-of-book line."""
  for line in it:
    if _END.search(line):
      return
    yield line


def parse_gutenberg(lines: Iterable[str], name: str = '<lines>') -> Iterator[str]:
  """Paragraphs of the text between the START and END markers.

  Raises ValueError (naming `name`) if there is no START marker. A missing END
  marker is accepted: the book then runs to the end of the lines.
  """
  it = iter(lines)
  marker = _find_start(it, name)
  yield from parse_text(_until_end(_after_marker(marker, it)))


def open_text(path: str):
  """A text file, gzip-compressed when its name ends in .gz."""
  if path.endswith('.gz'):
    return gzip.open(path, 'rt', encoding=ENCODING, errors='replace')
  return open(path, encoding=ENCODING, errors='replace')


def detect_format(path: str) -> str:
  """'wikiextractor' if the first non-blank line opens a `<doc>`, 'gutenberg' if
  a START marker is in the first DETECT_LINES lines, else 'text'."""
  first_seen = False
  with open_text(path) as f:
    for line in itertools.islice(f, DETECT_LINES):
      if not first_seen and line.strip():
        first_seen = True
        if _DOC_OPEN.match(line):
          return 'wikiextractor'
      if _START.search(line):
        return 'gutenberg'
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


SNIFF_BYTES = 8192


def _check_readable(path: str) -> None:
  """One-line ValueError for an empty, unreadable or binary file, before any
  work. Binary: a NUL byte in the first 8 KiB (decompressed), or more than a
  tenth of them not UTF-8."""
  try:
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
      sample = f.read(SNIFF_BYTES)
  except (OSError, EOFError) as e:
    why = getattr(e, 'strerror', None) or str(e)
    raise ValueError(f'{path} cannot be read ({why}): check the file or remove '
                     f'it from the sources') from None
  if not sample:
    raise ValueError(f'{path} is empty: remove it from the sources')
  text = sample.decode(ENCODING, errors='replace')
  if b'\x00' in sample or text.count('\ufffd') > len(text) / 10:
    raise ValueError(f'{path} is not text (binary data in its first '
                     f'{len(sample)} bytes): remove it from the sources')


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
  """Documents from every file matching `patterns` (a glob or a list of globs),
  in sorted path order, then from each `tfds:` source in the order given.

  Bad input (unknown format, a pattern matching nothing, an empty or unreadable
  file) raises ValueError here, not when the stream is first read, so that a
  caller fails before it starts any work.
  """
  if fmt not in FORMATS:
    raise ValueError(f'unknown format {fmt!r}: use one of {", ".join(FORMATS)}')
  if isinstance(patterns, str):
    patterns = [patterns]
  datasets = [read_tfds(p, tfds_data_dir) for p in patterns if p.startswith('tfds:')]
  globs = [p for p in patterns if not p.startswith('tfds:')]
  if not globs:
    return itertools.chain.from_iterable(datasets)
  files = list_files(globs)
  for path in files:
    _check_readable(path)
  return itertools.chain(_documents(files, fmt),
                         itertools.chain.from_iterable(datasets))


def _parse_file(path: str, fmt: str) -> Iterator[str]:
  """The documents of one file, streamed line by line."""
  kind = detect_format(path) if fmt == 'auto' else fmt
  with open_text(path) as f:
    if kind == 'wikiextractor':
      yield from parse_wikiextractor(f)
    elif kind == 'gutenberg':
      yield from parse_gutenberg(f, path)
    else:
      yield from parse_text(f)


def _documents(files: list[str], fmt: str) -> Iterator[str]:
  for path in files:
    yield from _parse_file(path, fmt)
