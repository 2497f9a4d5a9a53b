"""Configs that cannot work fail before anything is compiled, with one clear line."""

import jax
import pytest

from helpers import tiny_config
from jaxdistil import build
from jaxdistil.config_lib import ConfigError


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
    ({'max_len': 64}, r'max_len=64 exceeds max_position_embeddings=32'),
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
  path = os.path.join(os.path.dirname(__file__), '..', 'configs', 'ablation.py')
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
