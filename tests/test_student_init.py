"""Student initialisation from the teacher: layer maps, copies, the embedding fold."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistil.models import bert, student_init

TEACHER = bert.BertConfig(vocab_size=128, hidden_size=32, num_layers=4, num_heads=4,
                          intermediate_size=64, max_position_embeddings=32,
                          hidden_dropout=0.0, attention_dropout=0.0)


def test_default_layer_maps():
  assert student_init.default_layer_map(12, 6) == (0, 2, 4, 7, 9, 11)  # reference
  assert student_init.default_layer_map(12, 4) == (0, 4, 7, 11)
  assert student_init.default_layer_map(24, 6) == (0, 5, 9, 14, 18, 23)
  assert student_init.default_layer_map(12, 12) == tuple(range(12))
  assert student_init.default_layer_map(2, 1) == (0,)
  with pytest.raises(ValueError, match='cannot be drawn'):
    student_init.default_layer_map(6, 7)


@pytest.mark.parametrize('layer_map,match', [((0, 1, 2), 'has 3 entries'),
                                             ((0, 4), r'outside 0\.\.3')])
def test_bad_layer_maps(layer_map, match):
  with pytest.raises(ValueError, match=match):
    student_init.check_layer_map(layer_map, 4, 2)


def test_copies_exactly_the_mapped_layers():
  student = student_init.student_config(TEACHER, 2)
  teacher = bert.init(TEACHER, jax.random.key(0))
  params = student_init.init_from_teacher(teacher, TEACHER, student, (3, 1))
  # The student's tree is exactly a DistilBERT-layout init's tree.
  assert (jax.tree.structure(params) ==
          jax.tree.structure(bert.init(student, jax.random.key(1))))
  assert 'token_type_embeddings' not in params['embeddings']
  for i, j in enumerate((3, 1)):
    jax.tree.map(np.testing.assert_array_equal, params['encoder'][f'layer_{i}'],
                 teacher['encoder'][f'layer_{j}'])
  for name in ('word_embeddings', 'position_embeddings', 'LayerNorm'):
    jax.tree.map(np.testing.assert_array_equal, params['embeddings'][name],
                 teacher['embeddings'][name])
  jax.tree.map(np.testing.assert_array_equal, params['cls'], teacher['cls'])
  # Fresh buffers: donating the student must never delete teacher arrays.
  for s, t in zip(jax.tree.leaves(params['encoder']),
                  jax.tree.leaves(teacher['encoder'])):
    assert s.unsafe_buffer_pointer() != t.unsafe_buffer_pointer()


def test_folded_token_type_gives_the_teachers_embedding_output():
  teacher = bert.init(TEACHER, jax.random.key(0))
  # Make the type-0 embedding large so that dropping it would clearly show.
  teacher['embeddings']['token_type_embeddings']['embedding'] *= 25.0
  student = student_init.student_config(TEACHER, 2)
  ids = jax.random.randint(jax.random.key(2), (3, 9), 104, 128)
  mask = jnp.ones_like(ids)
  teacher_emb = bert.apply(TEACHER, teacher, ids, mask,
                           jnp.zeros_like(ids)).hidden_states[0]
  folded = student_init.init_from_teacher(teacher, TEACHER, student, (0, 3),
                                          fold_token_type=True)
  np.testing.assert_allclose(
      bert.apply(student, folded, ids, mask).hidden_states[0], teacher_emb,
      atol=1e-5, rtol=1e-5)
  plain = student_init.init_from_teacher(teacher, TEACHER, student, (0, 3))
  assert np.abs(bert.apply(student, plain, ids, mask).hidden_states[0]
                - teacher_emb).max() > 1e-2
  # With the map (0, ...) the first layer's output matches the teacher's too.
  np.testing.assert_allclose(
      bert.apply(student, folded, ids, mask).hidden_states[1],
      bert.apply(TEACHER, teacher, ids, mask).hidden_states[1], atol=1e-5)


def test_cannot_copy_into_a_differently_sized_student():
  student = student_init.student_config(TEACHER, 2, hidden_size=16)
  teacher = bert.init(TEACHER, jax.random.key(0))
  with pytest.raises(ValueError, match='hidden_size=16 differs'):
    student_init.init_from_teacher(teacher, TEACHER, student)


def test_frozen_mask_marks_only_position_embeddings():
  student = student_init.student_config(TEACHER, 2)
  params = bert.init(student, jax.random.key(0))
  mask = student_init.frozen_mask(params, True)
  frozen = [jax.tree_util.keystr(p) for p, v in
            jax.tree_util.tree_leaves_with_path(mask) if v]
  assert frozen == ["['embeddings']['position_embeddings']['embedding']"]
  assert not any(jax.tree.leaves(student_init.frozen_mask(params, False)))


def test_sinusoidal_positions_match_distilberts():
  torch = pytest.importorskip('torch')
  from transformers.models.distilbert import modeling_distilbert
  out = torch.empty(40, 24)
  modeling_distilbert._create_sinusoidal_embeddings(40, 24, out)
  np.testing.assert_allclose(np.asarray(student_init.sinusoidal_positions(40, 24)),
                             out.numpy(), atol=1e-6, rtol=0)


@pytest.mark.slow
def test_a_random_student_gets_fixed_sinusoidal_positions():
  """The random_init ablation's student, as the reference's: sinusoidal
  position embeddings, frozen (unchanged by training, no optimizer state)."""
  from helpers import tiny_config
  from jaxdistil import build
  c = tiny_config(**{'student_init.source': 'random'})
  run = build.build(c)
  table = np.asarray(run.state.params['embeddings']['position_embeddings']
                     ['embedding'])
  np.testing.assert_allclose(table, np.asarray(student_init.sinusoidal_positions(
      *table.shape)), atol=0)
  assert run.frozen['embeddings']['position_embeddings']['embedding']
  from helpers import batches
  state = run.state
  for b in batches(c, 2):
    state, _ = run.train_step(state, run.teacher_params, b)
  np.testing.assert_array_equal(
      np.asarray(state.params['embeddings']['position_embeddings']['embedding']),
      table)
