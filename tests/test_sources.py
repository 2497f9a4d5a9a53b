"""Text sources: each format parsed right, on synthetic and real shared files."""

import glob
import os
import re

import pytest

from jaxdistil.data import sources

SHARED = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data')
WIKI = os.path.join(SHARED, 'corpus', 'wikipedia', 'wiki_00')
BOOKS = sorted(glob.glob(os.path.join(SHARED, 'corpus', 'gutenberg', '*.txt')))
needs_shared = pytest.mark.skipif(not os.path.exists(WIKI),
                                  reason='../shared/data is not present')


def test_plain_text_splits_on_blank_and_whitespace_lines():
  lines = ['a b\n', 'c\n', '   \n', '\n', 'd\n', '\t\n', 'e f\n']
  assert list(sources.parse_text(lines)) == ['a b c', 'd', 'e f']


def test_wikiextractor_drops_titles_stubs_and_stray_text():
  lines = ['stray\n', '<doc id="1" url="u" title="Stub">\n', 'Stub\n', '\n',
           '</doc>\n', '<doc title="Full" id="2">\n', 'Full\n', '\n',
           'Body one.\n', 'Body two.\n', '</doc>\n']
  assert list(sources.parse_wikiextractor(lines)) == ['Body one. Body two.']


def test_gutenberg_keeps_only_the_book():
  lines = ['Header\n', '***START OF THIS PROJECT GUTENBERG EBOOK X ***\n',
           'Para one\n', 'continues.\n', '\n', 'Para two.\n',
           '*** END OF THE PROJECT GUTENBERG EBOOK X ***\n', 'Licence\n']
  assert list(sources.parse_gutenberg(lines)) == ['Para one continues.',
                                                 'Para two.']
  older = ['*** START OF X ***\n', 'Text.\n', '\n',
           'End of The Project Gutenberg Etext of X\n', 'licence\n']
  assert list(sources.parse_gutenberg(older)) == ['Text.']
  with pytest.raises(ValueError, match="book.txt: no '\\*\\*\\* START OF' marker"):
    list(sources.parse_gutenberg(['no markers\n'], 'book.txt'))


def test_read_documents_globs_sorts_and_detects(tmp_path):
  (tmp_path / 'sub').mkdir()
  (tmp_path / 'b.txt').write_text('second\n')
  (tmp_path / 'a.txt').write_text('first\n\nfirst again\n')
  (tmp_path / 'sub' / 'c.wiki').write_text(
      '<doc id="1" title="T">\nT\nwiki body\n</doc>\n')
  (tmp_path / 'sub' / 'd.gut').write_text(
      'x\n*** START OF IT ***\nbook text\n*** END OF IT ***\n')
  docs = list(sources.read_documents(str(tmp_path / '**' / '*'), 'auto'))
  assert docs == ['first', 'first again', 'second', 'wiki body', 'book text']
  assert sources.detect_format(str(tmp_path / 'sub' / 'c.wiki')) == 'wikiextractor'
  assert sources.detect_format(str(tmp_path / 'sub' / 'd.gut')) == 'gutenberg'
  assert sources.detect_format(str(tmp_path / 'a.txt')) == 'text'


def test_bad_sources_fail_with_one_line(tmp_path):
  with pytest.raises(ValueError, match="no files match '/nope/\\*.txt'"):
    sources.read_documents('/nope/*.txt')
  (tmp_path / 'empty.txt').write_text('')
  with pytest.raises(ValueError, match='empty.txt is empty'):
    sources.read_documents(str(tmp_path / '*.txt'))
  with pytest.raises(ValueError, match="unknown format 'pdf'"):
    sources.read_documents(str(tmp_path / '*.txt'), 'pdf')


@needs_shared
def test_real_wikiextractor_file():
  docs = list(sources.read_documents(WIKI, 'auto'))
  text = open(WIKI, encoding='utf-8').read()
  blocks = re.findall(r'<doc [^>]*>\n(.*?)</doc>', text, flags=re.S)
  # Independent count: blocks with any non-blank line after the title line.
  with_body = [b for b in blocks if any(l.strip() for l in b.split('\n')[1:])]
  assert len(docs) == len(with_body) < len(blocks)
  assert not any('<doc' in d or '</doc>' in d for d in docs)


@needs_shared
@pytest.mark.parametrize('book', BOOKS[:2] + BOOKS[-1:])
def test_real_gutenberg_books(book):
  docs = list(sources.read_documents(book, 'auto'))
  assert len(docs) > 50
  joined = ' '.join(docs)
  assert 'START OF' not in joined and 'END OF THE PROJECT' not in joined
  assert 'Project Gutenberg License' not in joined
  lines = open(book, encoding='utf-8', errors='replace').read().split('\n')
  start = next(i for i, l in enumerate(lines) if re.match(r'\s*\*\*\*\s*START OF', l,
                                                          re.I))
  first = next(l.strip() for l in lines[start + 1:] if l.strip())
  assert docs[0].startswith(first)


@needs_shared
def test_every_shared_book_has_a_start_and_an_end():
  # All 113 books: one (pg4657) ends only with "End of The Project Gutenberg
  # Etext of ..." and no *** END OF line.
  for book in BOOKS:
    with open(book, encoding='utf-8', errors='replace') as f:
      lines = f.readlines()
    assert any(sources._START.match(l) for l in lines), book
    assert any(sources._END.match(l) for l in lines), book


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
