"""GLUE readers on the real glue_data files, TFDS (mocked), bad input, tokenisation."""

import csv
import os

import numpy as np
import pytest

from helpers import mnli_lines
from jaxdistil.glue import data, tasks
from jaxdistil.glue.tasks import GlueError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLUE = os.path.join(ROOT, '..', 'shared', 'data', 'glue')
VOCAB = os.path.join(ROOT, '..', 'shared', 'data', 'vocab')
needs_glue = pytest.mark.skipif(not os.path.isdir(GLUE), reason='no shared GLUE data')

# Row counts of the GLUE release (../shared/data/README.md).
RELEASED = {('CoLA', 'train'): 8551, ('CoLA', 'dev'): 1043,
            ('SST-2', 'train'): 67349, ('SST-2', 'dev'): 872,
            ('MRPC', 'train'): 3668, ('MRPC', 'dev'): 408,
            ('WNLI', 'train'): 635, ('WNLI', 'dev'): 71}


def raw_lines(path):
  """The file's lines, split on b'\\n' only, from the bytes (no text decoding)."""
  with open(path, 'rb') as f:
    body = f.read()
  lines = body.split(b'\n')
  return [l for l in lines if l.strip()]


@pytest.fixture(scope='module')
def tok():
  from jaxdistil.data import tokenizer
  return tokenizer.load(VOCAB)


@needs_glue
@pytest.mark.parametrize('task,split', sorted(RELEASED))
def test_row_counts_match_the_files_and_the_release(task, split):
  t = tasks.get(task)
  ex = data.read_tsv(t, GLUE, split)
  header = 1 if t.has_header else 0
  assert len(ex) == len(raw_lines(os.path.join(GLUE, task, f'{split}.tsv'))) - header
  assert len(ex) == RELEASED[(task, split)]
  assert len(ex.labels) == len(ex) and ex.skipped == 0
  assert set(np.unique(ex.labels)) == {0, 1}
  assert (ex.text_b is not None) == t.is_pair


@needs_glue
def test_cola_has_no_header_so_its_first_line_is_an_example():
  first = raw_lines(os.path.join(GLUE, 'CoLA', 'dev.tsv'))[0].decode().split('\t')
  ex = data.read_tsv(tasks.get('CoLA'), GLUE, 'dev')
  assert ex.text_a[0] == first[3] and ex.labels[0] == int(first[1])
  assert first[0] == 'gj04'      # a source code, not a column name


@needs_glue
def test_mrpc_byte_order_mark_is_not_part_of_the_first_column():
  path = os.path.join(GLUE, 'MRPC', 'train.tsv')
  assert raw_lines(path)[0].startswith(b'\xef\xbb\xbfQuality\t')
  header = next(data._lines(path))[1]
  assert header[0] == 'Quality'
  ex = data.read_tsv(tasks.get('MRPC'), GLUE, 'train')
  first = raw_lines(path)[1].decode().split('\t')
  assert (ex.labels[0], ex.text_a[0], ex.text_b[0]) == (int(first[0]), first[3], first[4])


@needs_glue
def test_mrpc_quotes_are_text_not_csv_quoting():
  path = os.path.join(GLUE, 'MRPC', 'dev.tsv')
  rows = [l.decode('utf-8-sig').split('\t') for l in raw_lines(path)[1:]]
  quoted = [r for r in rows if r[4].startswith('"') and r[4].count('"') % 2]
  assert quoted, 'expected a sentence that opens an unbalanced quote'
  ex = data.read_tsv(tasks.get('MRPC'), GLUE, 'dev')
  assert ex.text_b.count(quoted[0][4]) >= 1
  assert ex.text_b == [r[4] for r in rows]
  # A CSV reader with default quoting merges lines across that quote.
  with open(path, encoding='utf-8-sig', newline='') as f:
    assert len(list(csv.reader(f, delimiter='\t'))) - 1 != len(ex)


@needs_glue
def test_sst2_sentences_are_kept_byte_for_byte():
  path = os.path.join(GLUE, 'SST-2', 'dev.tsv')
  fields = [l.decode().split('\t') for l in raw_lines(path)[1:]]
  ex = data.read_tsv(tasks.get('SST-2'), GLUE, 'dev')
  assert ex.text_a == [f[0] for f in fields]
  assert any("'" in s for s in ex.text_a) and ex.text_a[0].endswith(' ')
  assert list(ex.labels) == [int(f[1]) for f in fields]


def write(path, lines, bom=False):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8-sig' if bom else 'utf-8', newline='') as f:
    f.write('\n'.join(lines) + '\n')


def test_sst2_double_quotes_do_not_join_rows(tmp_path):
  lines = ['sentence\tlabel', '" the film opens with a quote\t1',
           'a "quoted" word and an open " one\t0', '"""\t1', 'plain\t0']
  for split in ('train', 'dev'):
    write(str(tmp_path / 'SST-2' / f'{split}.tsv'), lines)
  ex = data.read_tsv(tasks.get('SST-2'), str(tmp_path), 'dev')
  assert ex.text_a == [l.split('\t')[0] for l in lines[1:]]
  assert list(ex.labels) == [1, 0, 1, 0]


def test_qqp_malformed_rows_are_skipped_and_counted(tmp_path):
  head = 'id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate'
  good = ['1\t1\t2\tHow do I "learn" Go?\tWhat is the best way to learn Go?\t1',
          '2\t3\t4\tIs it "raining"?\tWhy is the sky blue?\t0']
  bad = ['3\t5\t6\tA question cut short', '4\t7\t8\tq1\tq2']
  write(str(tmp_path / 'QQP' / 'train.tsv'), [head, good[0], bad[0], good[1], bad[1]])
  write(str(tmp_path / 'QQP' / 'dev.tsv'), [head] + good)
  ex = data.read_tsv(tasks.get('QQP'), str(tmp_path), 'train')
  assert len(ex) == 2 and ex.skipped == 2
  assert ex.text_a[0] == 'How do I "learn" Go?' and list(ex.labels) == [1, 0]


def test_mnli_reads_its_many_columns_and_both_dev_sets(tmp_path):
  rows, labels = mnli_lines(6)
  for f in ('train.tsv', 'dev_matched.tsv', 'dev_mismatched.tsv'):
    write(str(tmp_path / 'MNLI' / f), rows)
  t = tasks.get('mnli')
  assert data.split_names(t) == ('train', 'dev_matched', 'dev_mismatched')
  for split in data.split_names(t):
    ex = data.read_tsv(t, str(tmp_path), split)
    assert ex.text_a == [f'premise {i} "q"' for i in range(6)]
    assert ex.text_b == [f'hypothesis {i}' for i in range(6)]
    assert list(ex.labels) == labels


def test_task_names_are_forgiving_and_an_unknown_one_lists_the_valid_ones():
  assert tasks.get('sst2').name == 'SST-2' and tasks.get('STS-B').name == 'STS-B'
  assert tasks.get('glue/stsb').name == 'STS-B' and tasks.get('cola').name == 'CoLA'
  with pytest.raises(GlueError) as e:
    tasks.get('SQuAD')
  msg = str(e.value)
  assert '\n' not in msg and "'SQuAD'" in msg
  for name in tasks.TABLE1_ORDER:
    assert name in msg


def test_a_folder_without_the_task_files_says_what_is_expected(tmp_path):
  write(str(tmp_path / 'RTE' / 'train.tsv'), ['index\tsentence1\tsentence2\tlabel'])
  with pytest.raises(GlueError) as e:
    data.read_tsv(tasks.get('RTE'), str(tmp_path), 'dev')
  msg = str(e.value)
  assert '\n' not in msg and 'dev.tsv' in msg and 'RTE' in msg
  assert data.tasks_present(str(tmp_path), list(tasks.TASKS.values())) == []
  with pytest.raises(GlueError, match='STS-B.*train.tsv, dev.tsv'):
    data.check_files(tasks.get('STS-B'), str(tmp_path / 'nowhere'))


@needs_glue
def test_tasks_present_in_the_shared_folder():
  present = data.tasks_present(GLUE, [tasks.TASKS[n] for n in tasks.TABLE1_ORDER])
  assert tasks.names(present) == ['CoLA', 'MRPC', 'SST-2', 'WNLI']


def test_a_bad_label_names_the_file_and_line(tmp_path):
  lines = ['index\tsentence1\tsentence2\tlabel', '0\ta\tb\tentailment',
           '1\tc\td\tmaybe']
  write(str(tmp_path / 'RTE' / 'train.tsv'), lines)
  write(str(tmp_path / 'RTE' / 'dev.tsv'), lines[:2])
  with pytest.raises(GlueError) as e:
    data.read_tsv(tasks.get('RTE'), str(tmp_path), 'train')
  msg = str(e.value)
  assert '\n' not in msg
  assert msg.startswith(os.path.join(str(tmp_path), 'RTE', 'train.tsv') + ':3:')
  assert "'maybe'" in msg and 'not_entailment' in msg


def test_a_bad_score_and_a_short_row_are_one_line_errors(tmp_path):
  head = ('index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t'
          'sentence1\tsentence2\tscore')
  write(str(tmp_path / 'STS-B' / 'train.tsv'),
        [head, '0\tnews\tf\t2012\t1\ts\ts\ta\tb\tfive'])
  write(str(tmp_path / 'STS-B' / 'dev.tsv'), [head, '0\tnews\tf\t2012\t1\ts\ts\ta'])
  t = tasks.get('STS-B')
  with pytest.raises(GlueError, match=r"train.tsv:2: label 'five' is not a number"):
    data.read_tsv(t, str(tmp_path), 'train')
  with pytest.raises(GlueError, match=r'dev.tsv:2: 8 tab-separated fields'):
    data.read_tsv(t, str(tmp_path), 'dev')


def test_a_wrong_header_is_named(tmp_path):
  write(str(tmp_path / 'SST-2' / 'train.tsv'), ['text\tlabel', 'a\t1'])
  with pytest.raises(GlueError, match="no column 'sentence'"):
    data.read_tsv(tasks.get('SST-2'), str(tmp_path), 'train')


# ----------------------------------------------------------------------------
# TFDS

def test_tfds_glue_through_mock_data():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=7):
    sst = data.read_split(tasks.get('SST-2'), 'dev', '/nonexistent', source='tfds')
    mnli = data.read_tfds(tasks.get('MNLI'), 'dev_mismatched')
    stsb = data.read_tfds(tasks.get('STS-B'), 'train')
  assert len(sst) == 7 and sst.text_b is None
  assert all(isinstance(s, str) for s in sst.text_a)
  assert set(sst.labels) <= {0, 1} and sst.labels.dtype == np.int32
  assert sst.origin == 'tfds:glue/sst2[validation]'
  assert len(mnli) == 7 and len(mnli.text_b) == 7
  assert mnli.origin == 'tfds:glue/mnli[validation_mismatched]'
  assert stsb.labels.dtype == np.float32 and len(stsb) == 7


def test_tfds_label_names_map_onto_ours():
  mnli = tasks.get('MNLI')
  # TFDS orders MNLI entailment, neutral, contradiction; the TSVs' list is sorted.
  mapping = data._tfds_label_map(mnli, mnli.tfds_labels)
  assert [mnli.labels[i] for i in mapping] == list(mnli.tfds_labels)
  wnli = tasks.get('WNLI')   # TFDS: not_entailment=0, entailment=1 like the TSV
  assert list(data._tfds_label_map(wnli, wnli.tfds_labels)) == [0, 1]


def test_tfds_unbuilt_dataset_is_one_line_and_never_downloads(tmp_path):
  with pytest.raises(GlueError) as e:
    data.read_tfds(tasks.get('SST-2'), 'dev', str(tmp_path))
  msg = str(e.value)
  assert '\n' not in msg and 'glue/sst2 is not built' in msg
  assert 'tfds build glue/sst2' in msg
  assert not list(tmp_path.rglob('downloads')) and not list(tmp_path.rglob('*.zip'))


# ----------------------------------------------------------------------------
# Tokenisation

def greedy_lengths(la, lb, budget):
  """Reference by brute force: of all splits that fill the budget, the most
  even one; the odd token goes to the longer text (the second on a tie)."""
  if la + lb <= budget:
    return la, lb
  best = None
  for a in range(0, min(la, budget) + 1):
    b = min(lb, budget - a)
    if a + b != budget:
      continue
    key = (abs(a - b), (a > b) if la <= lb else (a < b))
    if best is None or key < best[0]:
      best = (key, (a, b))
  return best[1]


def test_pair_lengths_fill_the_budget_most_evenly():
  for la in range(0, 14):
    for lb in range(0, 14):
      for budget in (1, 4, 7, 10):
        ka, kb = data.pair_lengths(la, lb, budget)
        assert (ka, kb) == greedy_lengths(la, lb, budget), (la, lb, budget)


@needs_glue
@pytest.mark.parametrize('max_len', [16, 33, 64])
def test_encode_pairs_match_the_hugging_face_tokenizer(tok, max_len):
  ex = data.read_tsv(tasks.get('MRPC'), GLUE, 'dev')
  enc = data.encode(ex, tok, max_len)
  hf = tok(ex.text_a, ex.text_b, truncation='longest_first', max_length=max_len,
           padding='max_length', return_tensors='np')
  for k in ('input_ids', 'attention_mask', 'token_type_ids'):
    np.testing.assert_array_equal(enc[k], hf[k])
    assert enc[k].dtype == np.int32 and enc[k].shape == (len(ex), max_len)
  np.testing.assert_array_equal(enc['labels'], ex.labels)


def test_encode_layout_cls_a_sep_b_sep(tok):
  ex = data.Examples(['hello world'], ['good bye'], np.array([1], np.int32), 'x')
  enc = data.encode(ex, tok, 10)
  ids = [tok.cls_token_id] + tok.convert_tokens_to_ids(['hello', 'world']) + \
        [tok.sep_token_id] + tok.convert_tokens_to_ids(['good', 'bye']) + \
        [tok.sep_token_id]
  assert list(enc['input_ids'][0]) == ids + [tok.pad_token_id] * 3
  assert list(enc['token_type_ids'][0]) == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
  assert list(enc['attention_mask'][0]) == [1] * 7 + [0] * 3
  single = data.encode(data.Examples(['hello world again'], None,
                                     np.array([0], np.int32), 'x'), tok, 4)
  assert list(single['input_ids'][0]) == [tok.cls_token_id] + \
      tok.convert_tokens_to_ids(['hello', 'world']) + [tok.sep_token_id]
  with pytest.raises(GlueError, match='max_len=2'):
    data.encode(ex, tok, 2)
