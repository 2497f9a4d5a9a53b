"""The student from the teacher: a DistilBERT layout seeded with teacher weights.

What is copied (as the reference extraction does): word and position embeddings,
the embedding LayerNorm, the whole MLM head (transform dense, its LayerNorm, the
output bias; the decoder is tied to the word embeddings), and one teacher layer for
each student layer, chosen by a layer map. Token-type embeddings and the pooler are
dropped. Optionally the teacher's token-type-0 embedding is folded into the
student's position embeddings, so that at initialisation the student's embedding
output equals the teacher's on single-segment input (the reference drops it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdistil.models.config import BertConfig


def default_layer_map(teacher_layers: int, student_layers: int) -> tuple[int, ...]:
  """Evenly spaced teacher layers, first and last included.

  round(linspace(0, n_t - 1, n_s)) with halves rounded up; for 12 -> 6 this is the
  reference's (0, 2, 4, 7, 9, 11), for 12 -> 4 it is (0, 4, 7, 11), for 24 -> 6
  (0, 5, 9, 14, 18, 23). A one-layer student takes the first teacher layer.
  """
  if student_layers < 1 or student_layers > teacher_layers:
    raise ValueError(f'a {student_layers}-layer student cannot be drawn from a '
                     f'{teacher_layers}-layer teacher: use 1..{teacher_layers} layers')
  if student_layers == 1:
    return (0,)
  step = (teacher_layers - 1) / (student_layers - 1)
  return tuple(int(i * step + 0.5) for i in range(student_layers))


def check_layer_map(layer_map, teacher_layers: int, student_layers: int) -> None:
  """Raise a one-line ValueError naming what is wrong with a layer map."""
  layer_map = tuple(layer_map)
  if len(layer_map) != student_layers:
    raise ValueError(
        f'student_init.layer_map has {len(layer_map)} entries but the student has '
        f'{student_layers} layers: give one teacher layer per student layer, or '
        f'leave it empty for {default_layer_map(teacher_layers, student_layers)}')
  bad = [i for i in layer_map if not 0 <= i < teacher_layers]
  if bad:
    raise ValueError(f'student_init.layer_map {layer_map} names teacher layers {bad} '
                     f'outside 0..{teacher_layers - 1}')


def student_config(teacher: BertConfig, num_layers: int, **overrides) -> BertConfig:
  """The DistilBERT layout of a teacher: fewer layers, no token types, and
  DistilBERT's dropout sites. A RoBERTa-family student keeps BERT's dropout
  sites, as DistilRoBERTa (a `RobertaForMaskedLM`) has them."""
  sites = 'bert' if teacher.family != 'bert' else 'distilbert'
  return teacher.replace(num_layers=num_layers, type_vocab_size=0,
                         layout=sites, **overrides)


def sinusoidal_positions(num_positions: int, dim: int) -> jax.Array:
  """DistilBERT's fixed position table (`sinusoidal_pos_embds`): row p holds
  sin(p / 10000^(2i/dim)) at column 2i and cos(p / 10000^(2i/dim)) at 2i + 1."""
  import numpy as np
  pos = np.arange(num_positions, dtype=np.float64)[:, None]
  rate = np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)[None, :]
  angle = pos / rate
  table = np.empty((num_positions, dim), np.float64)
  table[:, 0::2] = np.sin(angle[:, 0::2])
  table[:, 1::2] = np.cos(angle[:, 1::2])
  return jnp.asarray(table, jnp.float32)


def with_sinusoidal_positions(params: dict, cfg: BertConfig) -> dict:
  """`params` with the position embeddings replaced by the sinusoidal table."""
  table = sinusoidal_positions(cfg.max_position_embeddings, cfg.hidden_size)
  embeddings = dict(params['embeddings'],
                    position_embeddings={'embedding': table})
  return dict(params, embeddings=embeddings)


def init_from_teacher(teacher_params: dict, teacher_cfg: BertConfig,
                      student_cfg: BertConfig, layer_map=None,
                      fold_token_type: bool = False) -> dict:
  """Student parameters copied from the teacher (fresh buffers, never aliases).

  Fresh buffers matter: the student's state is donated to the train step, and a
  donated alias of a teacher array would delete the teacher's copy too.
  """
  if layer_map is None or len(layer_map) == 0:
    layer_map = default_layer_map(teacher_cfg.num_layers, student_cfg.num_layers)
  check_layer_map(layer_map, teacher_cfg.num_layers, student_cfg.num_layers)
  for field in ('hidden_size', 'num_heads', 'intermediate_size', 'vocab_size',
                'max_position_embeddings'):
    if getattr(teacher_cfg, field) != getattr(student_cfg, field):
      raise ValueError(
          f'cannot copy teacher weights: student {field}='
          f'{getattr(student_cfg, field)} differs from the teacher\'s '
          f'{getattr(teacher_cfg, field)}; use student_init.source="random" or '
          f'match the sizes')

  copy = lambda tree: jax.tree.map(jnp.copy, tree)
  emb = teacher_params['embeddings']
  position = emb['position_embeddings']['embedding']
  if fold_token_type:
    if 'token_type_embeddings' not in emb:
      raise ValueError('student_init.fold_token_type is set but the teacher has no '
                       'token-type embeddings')
    position = position + emb['token_type_embeddings']['embedding'][0][None, :]
  embeddings = {
      'word_embeddings': copy(emb['word_embeddings']),
      'position_embeddings': {'embedding': jnp.copy(position)},
      'LayerNorm': copy(emb['LayerNorm']),
  }
  layers = {f'layer_{i}': copy(teacher_params['encoder'][f'layer_{j}'])
            for i, j in enumerate(layer_map)}
  return {'embeddings': embeddings, 'encoder': layers,
          'cls': copy(teacher_params['cls'])}


def frozen_mask(params: dict, freeze_position_embeddings: bool) -> dict:
  """A tree of bools over the student's params: True where training must not
  change the value (the released DistilBERT kept BERT's positions frozen)."""
  def is_frozen(path, _):
    keys = [getattr(k, 'key', None) for k in path]
    return bool(freeze_position_embeddings and 'position_embeddings' in keys)
  return jax.tree_util.tree_map_with_path(is_frozen, params)
