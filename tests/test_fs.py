"""`jaxdistil.fs` and train's workdir I/O, on a local folder and on a URL.

The remote side runs on TensorFlow's in-memory filesystem (ram://), which goes
through the same `tf.io.gfile` calls as gs:// does; nothing here reaches GCS.
"""

import json
import os
import types
import uuid

import jax
import ml_collections
import numpy as np
import pytest

from jaxdistil import checkpoint, fs, metrics_writer


def ram_root() -> str:
  return f'ram://jaxdistil-test-{uuid.uuid4().hex}'


def cleanup(path: str) -> None:
  """Frees a ram:// tree. TensorFlow's in-memory filesystem matches names by
  prefix (listing ram://x/checkpoints also finds ram://x/checkpoints_damaged),
  which can make its rmtree fail: nothing to do with the code under test."""
  try:
    if fs.exists(path):
      fs.rmtree(path)
  except OSError:
    pass


@pytest.fixture(params=['local', 'ram'])
def root(request, tmp_path):
  path = str(tmp_path / 'root') if request.param == 'local' else ram_root()
  yield path
  if fs.is_remote(path):
    cleanup(path)


@pytest.fixture
def local_tmp(tmp_path, monkeypatch):
  """tempfile's directory (Writer's local JSONL, export's staging) in tmp_path."""
  import tempfile
  folder = tmp_path / 'tmpdir'
  folder.mkdir()
  monkeypatch.setattr(tempfile, 'tempdir', str(folder))
  return folder


def test_is_remote_join_dirname():
  assert fs.is_remote('gs://b/p') and fs.is_remote('ram://x') and fs.is_remote(
      's3://b')
  assert not fs.is_remote('/abs/path') and not fs.is_remote('rel/gs://x')
  assert not fs.is_remote('runs/a') and not fs.is_remote('c:\\x')
  assert fs.join('gs://b/p', 'checkpoints', '5') == 'gs://b/p/checkpoints/5'
  assert fs.join('gs://b/p/', 'metrics.jsonl') == 'gs://b/p/metrics.jsonl'
  assert fs.join('runs/a', 'hf') == os.path.join('runs/a', 'hf')
  assert fs.dirname('gs://b/p/checkpoints') == 'gs://b/p'
  assert fs.dirname('gs://b/p/checkpoints/') == 'gs://b/p'
  assert fs.dirname('/x/y') == '/x'


def test_dirs_and_listdir(root):
  assert not fs.exists(root) and not fs.isdir(root)
  fs.makedirs(fs.join(root, 'a', 'b'))
  fs.makedirs(fs.join(root, 'a', 'b'))          # again: fine
  fs.write_text(fs.join(root, 'a', 'f.txt'), 'x')
  assert fs.isdir(root) and fs.isdir(fs.join(root, 'a', 'b'))
  assert fs.exists(fs.join(root, 'a', 'f.txt'))
  assert not fs.isdir(fs.join(root, 'a', 'f.txt'))
  assert fs.isfile(fs.join(root, 'a', 'f.txt'))
  assert not fs.isfile(fs.join(root, 'a', 'b'))
  assert not fs.isfile(fs.join(root, 'a', 'missing'))
  assert sorted(fs.listdir(fs.join(root, 'a'))) == ['b', 'f.txt']
  assert fs.listdir(root) == ['a']
  with pytest.raises(FileNotFoundError):
    fs.listdir(fs.join(root, 'missing'))


def test_read_write_text(root):
  fs.makedirs(root)
  path = fs.join(root, 'x.json')
  fs.write_text(path, 'one')
  assert fs.read_text(path) == 'one'
  fs.write_text(path, 'two, é')
  assert fs.read_text(path) == 'two, é'
  assert fs.size(path) == len('two, é'.encode())
  with pytest.raises(FileNotFoundError):
    fs.read_text(fs.join(root, 'missing.json'))


def test_write_text_atomic(root):
  fs.makedirs(root)
  path = fs.join(root, 'model.json')
  fs.write_text_atomic(path, '{"a": 1}')
  fs.write_text_atomic(path, '{"a": 2}')
  assert json.loads(fs.read_text(path)) == {'a': 2}
  assert fs.listdir(root) == ['model.json']        # no PATH.tmp left behind


def test_copy_rename_remove(root, tmp_path):
  fs.makedirs(root)
  local = tmp_path / 'src.txt'
  local.write_text('hello')
  fs.copy_file(str(local), fs.join(root, 'a.txt'))           # up
  fs.write_text(fs.join(root, 'b.txt'), 'old')
  fs.copy_file(fs.join(root, 'a.txt'), fs.join(root, 'b.txt'))   # replaces
  assert fs.read_text(fs.join(root, 'b.txt')) == 'hello'
  fs.copy_file(fs.join(root, 'b.txt'), str(tmp_path / 'down.txt'))   # down
  assert (tmp_path / 'down.txt').read_text() == 'hello'
  fs.write_text(fs.join(root, 'c.txt'), 'c')
  fs.rename(fs.join(root, 'c.txt'), fs.join(root, 'a.txt'))   # replaces
  assert fs.read_text(fs.join(root, 'a.txt')) == 'c'
  assert sorted(fs.listdir(root)) == ['a.txt', 'b.txt']
  fs.remove(fs.join(root, 'b.txt'))
  assert fs.listdir(root) == ['a.txt']
  with pytest.raises(FileNotFoundError):
    fs.copy_file(fs.join(root, 'missing'), fs.join(root, 'x'))
  fs.makedirs(fs.join(root, 'd', 'e'))
  fs.write_text(fs.join(root, 'd', 'e', 'f'), 'f')
  fs.rmtree(fs.join(root, 'd'))
  assert not fs.exists(fs.join(root, 'd')) and fs.listdir(root) == ['a.txt']


def make_tree(folder, files):
  for rel, text in files.items():
    fs.makedirs(fs.dirname(fs.join(folder, *rel.split('/'))))
    fs.write_text(fs.join(folder, *rel.split('/')), text)


def read_tree(folder):
  return {rel: fs.read_text(fs.join(folder, *rel.split('/')))
          for rel in fs.files_under(folder)}


def test_copy_tree_and_copy_tree_up(root, tmp_path):
  src = str(tmp_path / 'hf')
  make_tree(src, {'config.json': '{}', 'model.safetensors': 'new weights',
                  'sub/vocab.txt': '[PAD]\n'})
  dst = fs.join(root, 'hf')
  # An older export there: one file replaced, one no longer written.
  make_tree(dst, {'model.safetensors': 'old weights', 'pytorch_model.bin': 'stale',
                  'sub/gone.txt': 'stale'})
  assert fs.copy_tree_up(src, dst) == ['config.json', 'model.safetensors',
                                       'sub/vocab.txt']
  assert read_tree(dst) == {'config.json': '{}', 'model.safetensors': 'new weights',
                            'sub/vocab.txt': '[PAD]\n'}
  # copy_tree keeps what is there; it also copies remote -> local.
  back = str(tmp_path / 'back')
  make_tree(back, {'extra': 'kept'})
  fs.copy_tree(dst, back)
  assert read_tree(back) == dict(read_tree(src), extra='kept')


def test_local_cache(tmp_path, monkeypatch):
  import tempfile
  monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
  a = fs.local_cache('gs://bucket/run/a_b')
  assert a == fs.local_cache('gs://bucket/run/a_b/')
  assert a != fs.local_cache('gs://bucket/run/a/b')
  assert os.path.dirname(a) == os.path.join(str(tmp_path), 'jaxdistil')
  assert 'gs_bucket_run_a_b' in os.path.basename(a)


# ---- checkpoint -------------------------------------------------------------


def test_checkpoint_directory_keeps_urls(monkeypatch, tmp_path):
  assert checkpoint.directory('gs://b/p') == 'gs://b/p/checkpoints'
  assert checkpoint.directory('gs://b/p/') == 'gs://b/p/checkpoints'
  monkeypatch.chdir(tmp_path)
  assert checkpoint.directory('runs/a') == os.path.join(str(tmp_path), 'runs', 'a',
                                                        'checkpoints')
  seen = []
  monkeypatch.setattr(checkpoint.ocp, 'CheckpointManager',
                      lambda directory, options: seen.append(directory))
  checkpoint.manager('gs://b/p')          # orbax mocked: nothing reaches GCS
  assert seen == ['gs://b/p/checkpoints']


def test_move_aside(root):
  step_dir = fs.join(root, 'checkpoints', '50')
  make_tree(step_dir, {'state/manifest.ocdbt': 'm', 'state/d/0': 'data',
                       'data/position': '{}'})
  aside = fs.join(root, 'checkpoints_damaged', '50')
  checkpoint.move_aside(step_dir, aside)
  assert not fs.exists(step_dir)
  assert read_tree(aside) == {'data/position': '{}', 'state/d/0': 'data',
                              'state/manifest.ocdbt': 'm'}
  if fs.is_remote(root):      # the same step damaged again replaces the copy
    make_tree(step_dir, {'state/other': 'x'})
    checkpoint.move_aside(step_dir, aside)
    assert read_tree(aside) == {'state/other': 'x'}


def test_model_dir_reads_a_remote_workdir_description(root):
  from jaxdistil import workdir
  from jaxdistil.convert import model_dir
  from jaxdistil.convert.hf_files import ConvertError
  from jaxdistil.data.tokenizer import has_tokenizer
  checkpoints = fs.join(root, 'checkpoints')
  assert workdir.latest_step(root) is None
  make_tree(checkpoints, {'25/state/x': '', '50/state/x': '', '75/data/x': '',
                          'tmp/state/x': ''})
  assert workdir.latest_step(root) == 50     # 75 has no state
  fs.write_text(fs.join(root, 'model.json'), '{"student": {}}')
  assert model_dir._read_json(fs.join(root, 'model.json')) == {'student': {}}
  with pytest.raises(ConvertError, match='cannot read'):
    model_dir._read_json(fs.join(root, 'nothing.json'))
  assert not has_tokenizer(fs.join(root, 'tokenizer'))
  assert workdir.tokenizer(root) is None
  make_tree(fs.join(root, 'tokenizer'), {'vocab.txt': '[PAD]\n'})
  assert has_tokenizer(fs.join(root, 'tokenizer'))
  assert workdir.tokenizer(root) == fs.join(root, 'tokenizer')


# ---- metrics_writer.Writer; workdir: describe, export_student; the whole run ----------


def lines(path_or_text):
  text = path_or_text
  return [json.loads(line) for line in text.splitlines()]


def test_writer_remote_keeps_jsonl_locally_and_uploads_on_sync(local_tmp):
  workdir = ram_root()
  remote = fs.join(workdir, 'metrics.jsonl')
  writer = metrics_writer.Writer(workdir)
  local = writer.path
  assert local == os.path.join(fs.local_cache(workdir), 'metrics.jsonl')
  assert local.startswith(str(local_tmp))
  writer.write(1, {'loss': 2.0})
  writer.write(2, {'loss': 1.5, 'eval/mlm_acc': 0.1})
  assert [r['step'] for r in lines(open(local).read())] == [1, 2]
  assert not fs.exists(remote)                 # not uploaded every step
  writer.sync()
  assert lines(fs.read_text(remote)) == lines(open(local).read())
  writer.write(3, {'loss': 1.0})
  writer.close()                               # uploads at the end
  assert [r['step'] for r in lines(fs.read_text(remote))] == [1, 2, 3]
  # TensorBoard wrote its events through gfile too.
  events = fs.listdir(fs.join(workdir, 'tensorboard'))
  assert events and all(e.startswith('events.out.tfevents') for e in events)

  # A rerun on the same VM appends to the local file.
  writer = metrics_writer.Writer(workdir)
  writer.write(3, {'loss': 0.9})
  writer.close()
  assert [r['step'] for r in lines(fs.read_text(remote))] == [1, 2, 3, 3]

  # A new VM (no local file) starts from the remote copy.
  os.remove(local)
  writer = metrics_writer.Writer(workdir)
  writer.write(4, {'loss': 0.8})
  writer.sync()
  assert [r['step'] for r in lines(fs.read_text(remote))] == [1, 2, 3, 3, 4]
  writer.close()
  cleanup(workdir)


def test_writer_local_is_unchanged(tmp_path, local_tmp):
  writer = metrics_writer.Writer(str(tmp_path))
  assert writer.path == os.path.join(str(tmp_path), 'metrics.jsonl')
  writer.write(1, {'loss': 2.0})
  writer.sync()                    # nothing to upload
  writer.close()
  assert [r['step'] for r in lines((tmp_path / 'metrics.jsonl').read_text())] == [1]
  assert not os.listdir(local_tmp)


def fake_run(tokenizer_dir):
  from jaxdistil.models.bert import BertConfig
  teacher = BertConfig(vocab_size=16, hidden_size=8, num_layers=2, num_heads=2,
                       intermediate_size=16, max_position_embeddings=8)
  student = teacher.replace(num_layers=1, type_vocab_size=0)
  return types.SimpleNamespace(
      step_config=types.SimpleNamespace(student=student, teacher=teacher),
      teacher_tokenizer=tokenizer_dir)


VOCAB = ''.join(f'{t}\n' for t in ['[UNK]', '[CLS]', '[SEP]', '[PAD]', '[MASK]'] +
                [f'w{i}' for i in range(11)])


def test_describe_workdir_remote(tmp_path):
  from jaxdistil import train, workdir as layout
  from jaxdistil.convert import model_dir
  from jaxdistil.data.tokenizer import has_tokenizer
  tok = tmp_path / 'tok'
  tok.mkdir()
  (tok / 'vocab.txt').write_text(VOCAB)
  (tok / 'tokenizer_config.json').write_text('{}')
  (tok / 'unrelated.txt').write_text('not a tokenizer file')
  run = fake_run(str(tok))
  config = ml_collections.ConfigDict({'teacher': str(tok), 'data': 'synthetic'})
  workdir = ram_root()
  fs.makedirs(workdir)
  for _ in range(2):                               # a rerun rewrites them
    layout.describe(workdir, run.step_config.student, run.step_config.teacher,
                    config.teacher, config.to_json_best_effort(indent=2),
                    train.tokenizer_source(run, config))
  assert sorted(fs.listdir(workdir)) == ['config.json', 'model.json', 'tokenizer']
  meta = model_dir._read_json(fs.join(workdir, 'model.json'))
  assert meta['student']['num_layers'] == 1 and meta['layout'] == 'distilbert'
  assert json.loads(fs.read_text(fs.join(workdir, 'config.json'))) == config.to_dict()
  assert sorted(fs.listdir(fs.join(workdir, 'tokenizer'))) == [
      'tokenizer_config.json', 'vocab.txt']
  assert fs.read_text(fs.join(workdir, 'tokenizer', 'vocab.txt')) == VOCAB
  assert has_tokenizer(fs.join(workdir, 'tokenizer'))
  cleanup(workdir)


def test_export_student_remote_replaces_old_files(local_tmp):
  from safetensors.numpy import load_file

  from jaxdistil.convert import export_student
  from jaxdistil.models import bert
  run = fake_run(None)
  params = bert.init(run.step_config.student, jax.random.key(0))
  workdir = ram_root()
  make_tree(workdir, {'tokenizer/vocab.txt': VOCAB,
                      'hf/pytorch_model.bin': 'an older export',
                      'hf/config.json': '{}'})
  out = export_student(workdir, run.step_config.student, params)
  assert out == fs.join(workdir, 'hf')
  assert sorted(fs.listdir(out)) == ['config.json', 'model.safetensors', 'vocab.txt']
  hf_config = json.loads(fs.read_text(fs.join(out, 'config.json')))
  assert hf_config['architectures'] == ['DistilBertForMaskedLM']
  assert hf_config['pad_token_id'] == 3          # read from the copied-down vocab
  down = local_tmp / 'model.safetensors'
  fs.copy_file(fs.join(out, 'model.safetensors'), str(down))
  tensors = load_file(str(down))
  np.testing.assert_array_equal(
      tensors['distilbert.embeddings.word_embeddings.weight'],
      np.asarray(params['embeddings']['word_embeddings']['embedding']))
  down.unlink()
  assert not os.listdir(local_tmp)               # the staging dir is gone
  cleanup(workdir)


@pytest.mark.slow
def test_train_on_a_remote_workdir(local_tmp, tmp_path, monkeypatch):
  """A whole (tiny) run with its workdir on ram://. Orbax cannot write ram://
  (its paths know gs:// but not ram://), so only the checkpoints go to a local
  folder; everything else goes to the URL."""
  from configs import tiny
  from jaxdistil import train
  local_checkpoints = str(tmp_path / 'checkpoints')
  monkeypatch.setattr(checkpoint, 'directory', lambda workdir: local_checkpoints)
  config = tiny.get_config()
  config.update(data='synthetic', total_steps=4, checkpoint_every=2, eval_every=0,
                peak_flops_per_device=1e12)
  workdir = ram_root()
  monkeypatch.setattr(train.signal, 'signal', lambda *args: None)  # keep pytest's
  result = train.train(config, workdir)
  assert result['step'] == 4 and result['hf'] == fs.join(workdir, 'hf')
  assert fs.read_text(fs.join(workdir, 'DONE')) == '4\n'
  assert sorted(fs.listdir(workdir)) == ['DONE', 'config.json', 'hf', 'metrics.jsonl',
                                         'model.json', 'tensorboard']
  assert [r['step'] for r in lines(fs.read_text(fs.join(workdir, 'metrics.jsonl')))
          ] == [1, 2, 3, 4]
  assert 'model.safetensors' in fs.listdir(fs.join(workdir, 'hf'))
  assert sorted(os.listdir(local_checkpoints)) == ['2', '4']
  cleanup(workdir)


def test_load_model_on_a_missing_or_hf_url_is_one_line():
  from jaxdistil import convert
  import tensorflow as tf
  with pytest.raises(convert.ConvertError, match='does not exist'):
    convert.load_model('ram://jaxdistil-missing-model')
  tf.io.gfile.makedirs('ram://jaxdistil-hf-url/m')
  with tf.io.gfile.GFile('ram://jaxdistil-hf-url/m/config.json', 'w') as f:
    f.write('{}')
  with pytest.raises(convert.ConvertError, match='copy a Hugging Face model'):
    convert.load_model('ram://jaxdistil-hf-url/m')
