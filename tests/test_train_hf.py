"""`train` with a Hugging Face teacher: loaded onto the mesh, distilled, exported.

The teacher is a real `save_pretrained` directory (random weights); the exported
student is checked against `transformers` (logits within 1e-5 of our model on
the final params), and the workdir alone is enough to read the student back.
"""

import json
import os

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from safetensors.numpy import load_file, save_file  # noqa: E402

from jaxdistil import convert, train  # noqa: E402
from jaxdistil.models import bert  # noqa: E402
from helpers import tiny_config  # noqa: E402
from helpers.parity import save_teacher  # noqa: E402

# End-to-end runs (subprocesses, whole trainings): the full suite only.
pytestmark = pytest.mark.slow

VOCAB = 128


def config_for(teacher, **kw):
  c = tiny_config(**{'data': 'synthetic', 'total_steps': 3, 'checkpoint_every': 2,
                     'eval_every': 3, 'eval_batches': 1,
                     'peak_flops_per_device': 1e10})
  c.teacher = teacher
  for k, v in kw.items():
    c[k] = v
  return c


def test_hf_teacher_distils_and_exports(tmp_path):
  teacher_dir = str(tmp_path / 'teacher')
  save_teacher(teacher_dir, hidden=48)     # another size than tiny's 32
  work = str(tmp_path / 'work')
  config = config_for(teacher_dir)
  result = train.train(config, work)
  assert result['step'] == 3
  with open(os.path.join(work, 'DONE')) as f:     # complete: babysit.sh stops
    assert f.read().strip() == '3'
  # The teacher's shape came from its checkpoint, into the config as run;
  # the caller's config is left as it was.
  assert result['config'].model.teacher.hidden_size == 48
  assert config.model.teacher.hidden_size == 32
  with open(os.path.join(work, 'model.json')) as f:
    meta = json.load(f)
  assert meta['student']['hidden_size'] == 48 and meta['student']['num_layers'] == 1
  assert meta['teacher_source'] == teacher_dir
  # Metrics carry MFU (against the configured peak) and the eval terms.
  with open(os.path.join(work, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  assert len(rows) == 3 and all(r['mfu'] > 0 for r in rows)
  assert 'eval/teacher_mlm_accuracy' in rows[-1] and 'eval/kl_to_teacher' in rows[-1]

  # The export: DistilBertForMaskedLM with the teacher's tokenizer, whose logits
  # are our final student's.
  hf = os.path.join(work, 'hf')
  assert result['hf'] == hf
  model = transformers.AutoModelForMaskedLM.from_pretrained(hf)
  model.eval()
  assert type(model).__name__ == 'DistilBertForMaskedLM'
  assert os.path.isfile(os.path.join(hf, 'vocab.txt'))
  student_cfg = bert.BertConfig(**meta['student'])
  params = jax.device_get(result['state'].params)
  rng = np.random.default_rng(0)
  ids = rng.integers(5, VOCAB, size=(2, 10))
  mask = np.ones_like(ids)
  mask[1, 6:] = 0
  ours = bert.apply(student_cfg, params, ids, mask)
  with torch.no_grad():
    theirs = model(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
  err = np.abs(np.asarray(ours.logits) - theirs.logits.numpy())[mask.astype(bool)]
  assert err.max() <= 1e-5, err.max()

  # The workdir alone gives the student back (convert export / GLUE read this).
  loaded = convert.load_model(work)
  assert loaded.kind == 'workdir' and loaded.config == student_cfg
  for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert loaded.tokenizer_dir == os.path.join(work, 'tokenizer')


def _poisoned_teacher(tmp_path):
  """A teacher whose second layer holds a NaN: its outputs (and so the
  distillation loss) are non-finite, while the layer the student copies is fine."""
  d = str(tmp_path / 'nan_teacher')
  save_teacher(d)
  path = os.path.join(d, 'model.safetensors')
  tensors = load_file(path)
  tensors['bert.encoder.layer.1.output.dense.bias'][0] = np.nan
  save_file(tensors, path, metadata={'format': 'pt'})
  return d


def test_nonfinite_skip_leaves_weights_and_counts(tmp_path, capsys):
  teacher = _poisoned_teacher(tmp_path)
  config = config_for(teacher, nonfinite='skip', max_skipped_steps=10,
                      eval_every=0)
  result = train.train(config, str(tmp_path / 'w'))
  assert result['metrics']['skipped'] == 1.0
  assert result['metrics']['skipped_steps'] == 3
  # No update was applied: the student is still the copy of teacher layer 0.
  want = convert.import_hf(teacher).params['encoder']['layer_0']
  got = jax.device_get(result['state'].params['encoder']['layer_0'])
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), b)


def test_too_many_skipped_steps_stop_with_one_line(tmp_path):
  teacher = _poisoned_teacher(tmp_path)
  config = config_for(teacher, nonfinite='skip', max_skipped_steps=1,
                      eval_every=0)
  with pytest.raises(train.TrainError, match='2 non-finite steps in a row up to '
                                             'step 2'):
    train.train(config, str(tmp_path / 'w'))
  config = config_for(teacher, eval_every=0)            # nonfinite='stop'
  with pytest.raises(train.TrainError, match='non-finite loss nan at step 1'):
    train.train(config, str(tmp_path / 'w2'))


def test_a_full_disk_during_a_save_is_one_line_and_keeps_earlier_checkpoints(
    tmp_path, monkeypatch):
  """The save at step 4 fails as a full disk makes it fail (ENOSPC, raised by
  the checkpoint writer); the run stops with one line, step 2 stays restorable
  and a rerun (space freed) resumes from it to the end."""
  import errno
  import orbax.checkpoint as ocp
  config = config_for('random', total_steps=6, eval_every=0)
  config.checkpoint_every = 2
  work = str(tmp_path / 'w')
  real_save = ocp.CheckpointManager.save

  def failing_save(self, step, *args, **kw):
    if step == 4:
      raise OSError(errno.ENOSPC, 'No space left on device')
    return real_save(self, step, *args, **kw)

  monkeypatch.setattr(ocp.CheckpointManager, 'save', failing_save)
  with pytest.raises(train.TrainError) as e:
    train.train(config, work)
  msg = str(e.value)
  assert '\n' not in msg
  assert msg.startswith('saving checkpoint 4 failed (OSError: ')
  assert 'the disk is full' in msg and 'checkpoints [2]' in msg
  monkeypatch.setattr(ocp.CheckpointManager, 'save', real_save)
  result = train.train(config_for('random', total_steps=6, eval_every=0), work)
  assert result['step'] == 6
  with open(os.path.join(work, 'metrics.jsonl')) as f:
    steps = [json.loads(l)['step'] for l in f]
  assert steps == [1, 2, 3, 4, 3, 4, 5, 6]      # resumed from step 2
