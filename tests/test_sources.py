"""Text sources: each format parsed right, on synthetic and real shared files."""

import builtins
import glob
import os
import re

import numpy as np
import pytest

from jaxdistil.data import sources

SHARED = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data')
WIKI = os.path.join(SHARED, 'corpus', 'wikipedia', 'wiki_00')
BOOK_DIR = os.path.join(SHARED, 'corpus', 'gutenberg')
BOOKS = sorted(glob.glob(os.path.join(BOOK_DIR, '*.txt')))
needs_shared = pytest.mark.skipif(not os.path.exists(WIKI),
                                  reason='../shared/data is not present')
# Independent of the module's own patterns, on purpose.
START_LINE = re.compile(r'\*\*\*\s*start\s+of', re.I)
END_LINE = re.compile(r'\*\*\*\s*end\s+of', re.I)


def book(name):
  return os.path.join(BOOK_DIR, name)


# Synthetic cases, one parser at a time.

def test_plain_text_splits_on_blank_and_whitespace_lines():
  lines = ['\n', '  a b \n', 'c\r\n', '   \n', '\n', 'd\n', '\t\n', 'e f']
  assert list(sources.parse_text(lines)) == ['a b c', 'd', 'e f']
  assert list(sources.parse_text(['\n', ' \n'])) == []


def test_wikiextractor_drops_titles_stubs_and_stray_text():
  lines = ['stray\n', '<doc id="1" url="u" title="Stub">\n', 'Stub\n', '\n',
           '  \n', '</doc>\n', 'between\n', '<doc title="Full" id="2">\n',
           'Full\n', '\n', 'Body one.\n', 'Body two.\n', '</doc>\n', 'after\n']
  assert list(sources.parse_wikiextractor(lines)) == ['Body one. Body two.']


def test_wikiextractor_missing_close_does_not_leak_tags():
  lines = ['<doc id="1" title="A">\n', 'A\n', 'body a\n',
           '<doc id="2" title="B">\n', 'B\n', 'body b\n']
  assert list(sources.parse_wikiextractor(lines)) == ['body a', 'body b']


def test_gutenberg_keeps_only_the_book_paragraphs():
  lines = ['Header\n', '*** START OF THE PROJECT GUTENBERG EBOOK X ***\n',
           '\n', 'Para one\n', 'continues.\n', '\n', 'Para two.\n', '\n',
           'End of the Project Gutenberg EBook of X\n', '\n',
           '*** END OF THE PROJECT GUTENBERG EBOOK X ***\n', 'Licence\n']
  assert list(sources.parse_gutenberg(lines)) == ['Para one continues.',
                                                 'Para two.']


def test_gutenberg_older_markers():
  older = ['Header\n', '***START OF THIS PROJECT GUTENBERG EBOOK X ***\n',
           'Text.\n', '***end of this project gutenberg ebook x ***\n', 'L\n']
  assert list(sources.parse_gutenberg(older)) == ['Text.']
  # No END marker (pg4657): the licence appended under the old header line is cut.
  no_end = ['*** START OF THE PROJECT GUTENBERG ETEXT OF X ***\n', 'Text.\n',
            'The Project Gutenberg Etext of X\n', 'small print\n']
  assert list(sources.parse_gutenberg(no_end)) == ['Text.']
  # No END line of any kind: the book runs to the end of the file.
  assert list(sources.parse_gutenberg(['***START OF X***\n', 'a\n', '\n',
                                       'b\n'])) == ['a', 'b']


def test_gutenberg_wrapped_start_marker():
  wrapped = ['*** START OF THIS PROJECT GUTENBERG EBOOK\n', 'A LONG TITLE ***\n',
             '\n', 'First.\n', '*** END OF IT ***\n']
  assert list(sources.parse_gutenberg(wrapped)) == ['First.']
  # A marker merely missing its closing asterisks loses no text.
  unclosed = ['*** START OF X\n', 'First line\n', 'goes on.\n', '\n', 'Next.\n']
  assert list(sources.parse_gutenberg(unclosed)) == ['First line goes on.',
                                                    'Next.']


def test_gutenberg_without_start_marker_raises_naming_the_file(tmp_path):
  with pytest.raises(ValueError, match=r"book\.txt: no '\*\*\* START OF' marker: "
                                       r"not a Project Gutenberg book\?"):
    list(sources.parse_gutenberg(['no markers\n'], 'book.txt'))
  path = tmp_path / 'plain.txt'
  path.write_text('just text\n')
  with pytest.raises(ValueError, match="plain.txt: no '"):
    list(sources.read_documents(str(path), 'gutenberg'))


# Files: detection, globs, order, errors.

def test_detect_format(tmp_path):
  wiki = tmp_path / 'w'
  wiki.write_bytes('\ufeff\n<doc id="1" title="T">\nT\nbody\n</doc>\n'.encode())
  gut = tmp_path / 'g'
  gut.write_text('header\n' * 500 + '***START OF X ***\ntext\n')
  late = tmp_path / 'late'
  late.write_text('header\n' * 1000 + '*** START OF X ***\ntext\n')
  text = tmp_path / 't'
  text.write_text('a line about <doc tags>\n<doc id="1">\n')
  assert sources.detect_format(str(wiki)) == 'wikiextractor'
  assert sources.detect_format(str(gut)) == 'gutenberg'
  assert sources.detect_format(str(late)) == 'text'
  assert sources.detect_format(str(text)) == 'text'
  assert list(sources.read_documents(str(wiki))) == ['body']


def test_read_documents_recursive_glob_sorted_order_and_auto(tmp_path):
  (tmp_path / 'sub' / 'deeper').mkdir(parents=True)
  # Written out of order: the result must follow the sorted paths.
  (tmp_path / 'sub' / 'deeper' / 'd.gut').write_text(
      'x\n*** START OF IT ***\nbook text\n*** END OF IT ***\nlicence\n')
  (tmp_path / 'b.txt').write_text('second\n')
  (tmp_path / 'sub' / 'c.wiki').write_text(
      '<doc id="1" title="T">\nT\nwiki body\n</doc>\n')
  (tmp_path / 'a.txt').write_bytes(b'\xef\xbb\xbffirst\n\nfirst again\xff\n')
  everything = str(tmp_path / '**' / '*')
  docs = list(sources.read_documents(everything, 'auto'))
  assert docs == ['first', 'first again\ufffd', 'second', 'wiki body',
                  'book text']
  assert list(sources.read_documents(everything, 'auto')) == docs
  # A list of patterns: files matched twice are read once, still sorted.
  patterns = [str(tmp_path / 'b.txt'), str(tmp_path / '*.txt')]
  assert list(sources.read_documents(patterns, 'text')) == [
      'first', 'first again\ufffd', 'second']


def test_bad_sources_fail_with_one_line(tmp_path, monkeypatch):
  missing = str(tmp_path / 'nope' / '*.txt')
  with pytest.raises(ValueError, match=re.escape(f"no files match '{missing}': "
                                                 f"check the path")):
    sources.read_documents(missing)
  with pytest.raises(ValueError, match="unknown format 'pdf'"):
    sources.read_documents(missing, 'pdf')
  (tmp_path / 'empty.txt').write_text('')
  with pytest.raises(ValueError, match='empty.txt is empty'):
    sources.read_documents(str(tmp_path / '*.txt'))
  (tmp_path / 'empty.txt').unlink()
  locked = tmp_path / 'locked.txt'
  locked.write_text('text\n')

  # Tests may run as root, where chmod 000 still reads: fail the open instead.
  def refuse(path, *args, **kwargs):
    if str(path) == str(locked):
      raise PermissionError(13, 'Permission denied', str(path))
    return builtins.open(path, *args, **kwargs)

  monkeypatch.setattr(sources, 'open', refuse, raising=False)
  with pytest.raises(ValueError, match=r'locked.txt cannot be read \(Permission '
                                       r'denied\)'):
    sources.read_documents(str(tmp_path / '*.txt'))


def test_binary_files_are_refused_by_name(tmp_path):
  """An image, an archive or a compiled file among the sources is named, not
  tokenised into sequences of garbage."""
  import gzip
  rng = np.random.default_rng(0)
  (tmp_path / 'picture.txt').write_bytes(b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR'
                                         + rng.bytes(4000))
  with pytest.raises(ValueError, match=r'picture.txt is not text'):
    sources.read_documents(str(tmp_path / 'picture.txt'))
  # No NUL byte, but not UTF-8 either (random high bytes).
  noise = bytes(b for b in rng.integers(128, 256, 4000, dtype=np.uint8))
  (tmp_path / 'noise.txt').write_bytes(noise)
  with pytest.raises(ValueError, match=r'noise.txt is not text'):
    sources.read_documents(str(tmp_path / 'noise.txt'))
  with gzip.open(tmp_path / 'packed.txt.gz', 'wb') as f:
    f.write(b'\x00\x01\x02' * 100)
  with pytest.raises(ValueError, match=r'packed.txt.gz is not text'):
    sources.read_documents(str(tmp_path / 'packed.txt.gz'))
  (tmp_path / 'fake.txt.gz').write_text('not gzip at all\n')
  with pytest.raises(ValueError, match=r'fake.txt.gz cannot be read'):
    sources.read_documents(str(tmp_path / 'fake.txt.gz'))
  # Real text with a stray Latin-1 byte or two still reads.
  (tmp_path / 'ok.txt').write_bytes('caf\u00e9 '.encode() * 50 + b'na\xefve\n')
  assert list(sources.read_documents(str(tmp_path / 'ok.txt')))


# The real shared files.

@needs_shared
def test_real_wikiextractor_file():
  docs = list(sources.read_documents(WIKI, 'auto'))
  with open(WIKI, encoding='utf-8') as f:
    text = f.read()
  n_open = len(re.findall(r'^<doc ', text, flags=re.M))
  blocks = re.findall(r'^<doc [^>]*>\n(.*?)^</doc>', text, flags=re.S | re.M)
  # Independently: blocks with a non-blank line after the title line.
  with_body = [b for b in blocks
               if any(line.strip() for line in b.strip().split('\n')[1:])]
  assert len(blocks) == n_open == 1530
  assert len(docs) == len(with_body) < n_open
  assert not any('<doc' in d or '</doc>' in d for d in docs)
  # The first document is the body of the first block with one.
  first = [line.strip() for line in with_body[0].strip().split('\n')[1:]
           if line.strip()]
  assert docs[0] == ' '.join(first)


def first_text_after_start(path):
  """The first non-blank line after the START marker (and after its wrapped
  title, when the marker line does not close with ***)."""
  with open(path, encoding='utf-8-sig', errors='replace') as f:
    lines = f.read().splitlines()
  i = next(i for i, line in enumerate(lines) if START_LINE.search(line))
  while not lines[i].rstrip().endswith('***'):
    i += 1
  return next(line.strip() for line in lines[i + 1:] if line.strip())


@needs_shared
@pytest.mark.parametrize('name', ['data_books_11-0.txt', 'data_books_43-0.txt',
                                  'data_books_pg4657.txt'])
def test_real_gutenberg_books(name):
  # 11-0: a current book; 43-0: its START marker wraps onto a second line;
  # pg4657: an old etext with no END marker and its licence at the end.
  docs = list(sources.read_documents(book(name), 'auto'))
  assert len(docs) > 300
  assert docs[0].startswith(first_text_after_start(book(name)))
  joined = ' '.join(docs)
  for words in ('START OF', 'END OF THE PROJECT', 'END OF THIS PROJECT',
                'Project Gutenberg License', 'Project Gutenberg Etext of',
                'SMALL PRINT'):
    assert words not in joined, words


@pytest.mark.slow
@needs_shared
def test_every_shared_book_parses_without_markers_or_licence():
  assert len(BOOKS) == 113
  no_end = []
  for path in BOOKS:
    with open(path, encoding='utf-8-sig', errors='replace') as f:
      lines = f.read().splitlines()
    assert sum(bool(START_LINE.search(line)) for line in lines) == 1, path
    if not any(END_LINE.search(line) for line in lines):
      no_end.append(os.path.basename(path))
    docs = list(sources.parse_gutenberg(lines, path))
    assert docs and docs[0].startswith(first_text_after_start(path)), path
    joined = ' '.join(docs)
    assert not START_LINE.search(joined) and not END_LINE.search(joined), path
    assert 'Project Gutenberg License' not in joined, path
  assert no_end == ['data_books_pg4657.txt']


# TFDS sources (read only when already built; never downloaded).

def test_tfds_source_with_mock_data():
  tfds = pytest.importorskip('tensorflow_datasets')
  with tfds.testing.mock_data(num_examples=7,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    docs = list(sources.read_documents('tfds:wikipedia/20230601.en:train:text'))
  assert len(docs) == 7 and all(isinstance(d, str) and d for d in docs)
  with tfds.testing.mock_data(num_examples=3,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    with pytest.raises(ValueError, match="has no feature 'body'"):
      sources.read_documents('tfds:wikipedia/20230601.en:train:body')


def test_unbuilt_tfds_dataset_says_what_to_run(tmp_path):
  pytest.importorskip('tensorflow_datasets')
  with pytest.raises(ValueError, match=r'is not built in .* run `tfds build '
                                       r'wikipedia/20230601.en'):
    sources.read_documents('tfds:wikipedia/20230601.en', tfds_data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="TFDS has no dataset 'no_such_set'"):
    sources.read_documents('tfds:no_such_set', tfds_data_dir=str(tmp_path))
