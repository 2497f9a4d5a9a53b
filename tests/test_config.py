"""Configs that cannot work fail before anything is compiled, with one clear line."""

import jax
import pytest

from helpers import tiny_config
from jaxdistil import build
from jaxdistil.config_lib import ConfigError

import os
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def compile_events():
  events = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda name, *a, **kw: events.append(name))
  return events


BAD = [
    ({'model.student.hidden_size': 16, 'model.student.num_heads': 4,
      'student_init.source': 'random'}, r'loss\.alpha_cos=1\.0 .*hidden_size=16'),
    ({'model.student.hidden_size': 16, 'model.student.num_heads': 4,
      'loss.alpha_cos': 0.0}, r'student_init\.source="teacher" copies weights'),
    ({'student_init.layer_map': (0, 1)}, r'layer_map has 2 entries'),
    ({'student_init.layer_map': (5,)}, r'teacher layers \[5\] outside 0\.\.1'),
    ({'batch_size': 12}, r'batch_size=12 is not divisible by data x fsdp'),
    ({'batch_size': 8, 'micro_batches': 3}, r'x 3 = 24'),
    ({'loss.temperature': 0.0}, r'loss\.temperature=0\.0 must be > 0'),
    ({'loss.alpha_ce': 0.0, 'loss.alpha_mlm': 0.0, 'loss.alpha_cos': 0.0},
     r'all loss weights'),
    ({'max_len': 64}, r'max_len=64 exceeds the 32 positions the teacher has'),
    ({'mesh.data': 3}, r'needs 3 devices but 8 are present'),
    ({'model.student.num_heads': 5, 'student_init.source': 'random',
      'loss.alpha_cos': 0.0}, r'not divisible by num_heads=5'),
    ({'dtype': 'float16'}, r"dtype='float16'"),
    ({'student_init.source': 'copy'}, r'student_init\.source=\'copy\''),
    ({'masking.mask_prob': 0.0}, r'masking\.mask_prob=0\.0 must be in \(0, 1\]'),
    ({'masking.mask_prob': 1.5}, r'masking\.mask_prob=1\.5'),
    ({'masking.smoothing': -0.7}, r'masking\.smoothing=-0\.7 must be in \[0, 1\]'),
    ({'masking.keep': -0.1}, r'masking\.keep=-0\.1 must be in \[0, 1\]'),
    ({'masking.mask_token': 0.9}, r'0\.9 \+ 0\.1 \+ 0\.1 = 1\.1, not 1'),
    ({'num_epochs': -1.0}, r'num_epochs=-1\.0 must be >= 0'),
    ({'num_epochs': 3.0, 'data': 'synthetic'}, r'num_epochs needs prepared data'),
    ({'student_init.source': 'random', 'student_init.random_positions': 'rope'},
     r'random_positions=\'rope\''),
    ({'student_init.source': 'random', 'student_init.random_positions': 'learned'},
     r'would keep random positions fixed'),
    ({'batch_size': 0}, r'batch_size=0 must be >= 1'),
    ({'batch_size': -8}, r'batch_size=-8 must be >= 1'),
    ({'optim.lr_mults': (('head/.*', 10.0),)}, r"\['head/\.\*'\] match no parameter"),
]


@pytest.mark.parametrize('overrides,message', BAD)
def test_bad_config_fails_before_compiling(overrides, message, compile_events):
  c = tiny_config(**overrides)
  with pytest.raises(ConfigError, match=message) as info:
    build.build(c)
  assert '\n' not in str(info.value)
  assert '/jax/core/compile/backend_compile_duration' not in compile_events


def test_vocabulary_sizes_must_match():
  from jaxdistil import config_lib
  c = tiny_config()
  teacher = config_lib.teacher_config(c)
  assert config_lib.student_config(c).vocab_size == teacher.vocab_size
  # An imported teacher brings its own vocabulary, which must be the student's.
  with pytest.raises(ConfigError, match='vocab_size=128 differs from the '
                                        'teacher.s 30522'):
    config_lib.validate(c, 8, (8, 1, 1), teacher=teacher.replace(vocab_size=30522))


def test_base_config_is_bert_base_and_valid():
  from configs import distilbert_base
  from jaxdistil import config_lib
  c = distilbert_base.get_config()
  t, s = config_lib.teacher_config(c), config_lib.student_config(c)
  assert (t.num_layers, t.hidden_size, t.num_heads, t.vocab_size) == (12, 768, 12,
                                                                       30522)
  assert (s.num_layers, s.type_vocab_size) == (6, 0)
  assert config_lib.layer_map(c) == (0, 2, 4, 7, 9, 11)
  loss = config_lib.loss_config(c)
  assert (loss.temperature, loss.alpha_ce, loss.alpha_mlm, loss.alpha_cos,
          loss.alpha_mse) == (2.0, 5.0, 2.0, 1.0, 0.0)
  config_lib.validate(c, 8, (8, 1, 1))    # 4096 = 8 x 16 micro-batches x 32


def test_ablation_variants_change_exactly_one_thing():
  import importlib.util
  import os
  from jaxdistil import config_lib
  path = os.path.join(os.path.dirname(__file__), '..', 'configs', 'ablate.py')
  spec = importlib.util.spec_from_file_location('ablation', path)
  ablation = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(ablation)
  full = ablation.get_config('full').to_dict()
  changed = {}
  for variant in ('no_ce', 'no_cos', 'no_mlm', 'random_init'):
    c = ablation.get_config(variant)
    config_lib.validate(c, 8, (8, 1, 1))
    flat = lambda d, p='': {f'{p}{k}': v for key, val in d.items() for k, v in (
        flat(val, f'{key}.').items() if isinstance(val, dict) else [(key, val)])}
    a, b = flat(full), flat(c.to_dict())
    changed[variant] = sorted(k for k in a if a[k] != b[k])
  assert changed == {'no_ce': ['loss.alpha_ce'], 'no_cos': ['loss.alpha_cos'],
                     'no_mlm': ['loss.alpha_mlm'],
                     # fixed sinusoidal positions, as the reference's: the
                     # defaults for a random student
                     'random_init': ['student_init.source']}
  random_init = ablation.get_config('random_init').student_init
  assert random_init.random_positions == 'sinusoidal'
  assert random_init.freeze_position_embeddings
  small = ablation.get_config('no_ce,small')
  assert small.model.teacher.hidden_size == 256 and small.loss.alpha_ce == 0
  with pytest.raises(ValueError, match="unknown ablation 'no_kd'"):
    ablation.get_config('no_kd')


def test_base_config_is_the_papers_recipe():
  from configs import distilbert_base
  c = distilbert_base.get_config()
  assert c.masking.to_dict() == {'mask_prob': 0.15, 'smoothing': 0.7,
                                 'mask_token': 0.8, 'random_token': 0.1,
                                 'keep': 0.1}
  assert c.num_epochs == 3 and c.packing


def test_every_config_has_the_keys_scripts_rely_on():
  from configs import distilbert_base, small, tiny
  for module in (distilbert_base, small, tiny):
    c = module.get_config()
    for key in ('seed', 'teacher', 'total_steps', 'batch_size', 'max_len',
                'checkpoint_every', 'eval_every', 'data'):
      assert key in c, (module.__name__, key)


# Config files and overrides on the command line (before absl sees them).

def test_a_config_file_with_a_syntax_error_names_file_and_line(tmp_path):
  from jaxdistil import config_lib
  bad = tmp_path / 'bad.py'
  bad.write_text('from jaxdistil import config_lib\n\ndef get_config(:\n  pass\n')
  with pytest.raises(ConfigError, match=r'bad.py line 3: syntax error'):
    config_lib.load_file(str(bad))
  raises = tmp_path / 'raises.py'
  raises.write_text('def get_config():\n  return {}[1]\n')
  with pytest.raises(ConfigError, match=r'raises.py: get_config\(\'\'\) failed: '
                                        r'KeyError'):
    config_lib.load_file(str(raises))
  (tmp_path / 'none.py').write_text('x = 1\n')
  with pytest.raises(ConfigError, match=r'none.py has no get_config'):
    config_lib.load_file(str(tmp_path / 'none.py'))


def test_an_unknown_override_names_the_nearest_key():
  from jaxdistil import config_lib
  argv = ['train', '--config=configs/tiny.py', '--config.batch_size=8',
          '--config.model.studnet.num_layers=1']
  with pytest.raises(ConfigError, match=r"model has no key 'studnet' "
                                        r"\(nearest: model.student\)"):
    config_lib.check_command_line(argv)
  with pytest.raises(ConfigError, match=r"the config has no key 'no_such_key'"):
    config_lib.check_command_line(['train', '--config', 'configs/tiny.py',
                                   '--config.no_such_key=1'])
  config_lib.check_command_line(argv[:3])        # known keys pass


@pytest.mark.slow
def test_the_train_cli_prints_one_line_for_each(tmp_path):
  import subprocess
  import sys
  bad = tmp_path / 'bad.py'
  bad.write_text('def get_config(:\n')
  cases = [([f'--config={bad}'], 'bad.py line 1: syntax error'),
           (['--config=configs/tiny.py', '--config.no_such_key=1'],
            "no key 'no_such_key'"),
           (['--config=configs/tiny.py', '--config.batch_size=0',
             '--config.data=synthetic'], 'batch_size=0 must be >= 1')]
  for args, message in cases:
    out = subprocess.run([sys.executable, '-m', 'jaxdistil.train', *args,
                          f'--workdir={tmp_path / "w"}'], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    lines = [l for l in out.stderr.splitlines() if l.startswith('jaxdistil.train:')]
    assert out.returncode == 2 and len(lines) == 1 and message in lines[0], out.stderr
    assert 'Traceback' not in out.stderr
  assert not (tmp_path / 'w' / 'checkpoints').exists()
