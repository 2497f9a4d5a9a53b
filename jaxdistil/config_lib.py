"""Run configs: the defaults every config file starts from, and their validation.

Config files in `configs/` call `default_config()` and change what differs, so every
config has the same keys (scripts and checks rely on `seed`, `teacher`,
`total_steps`, `batch_size`, `max_len`, `checkpoint_every`, `eval_every`, `data`).
`validate()` turns a config that cannot work into one `ConfigError` line naming the
field and the fix, before anything is compiled.

Reading config files and checking `--config.KEY=` overrides is
`jaxdistil.config_files`' (re-exported here, with `ConfigError`).

Over 300 lines on purpose: the default config with a comment on every key
(the reference for all keys) sits beside its validation, because a new key
changes both.
"""

from __future__ import annotations

import math

import ml_collections
from ml_collections import config_dict

from jaxdistil import losses, optim
# The file and command-line half, re-exported: `config_lib.load_file` etc.
from jaxdistil.config_files import (ConfigError, check_command_line,  # noqa: F401
                                    check_overrides, flags_parser, load_file,
                                    load_module, nearest_key,
                                    resolve_command_line, resolve_path, shipped)
from jaxdistil.models import config as model_config
from jaxdistil.models import student_init
from jaxdistil.models.config import BertConfig


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0                       # params, dropout and data order derive from it
  # 'random' (random weights; tests and benchmarks), an HF directory or hub id, or
  # a jaxdistil checkpoint directory.
  c.teacher = 'random'
  c.total_steps = 1000             # optimizer steps
  # > 0: total_steps is set to cover this many passes over the prepared data
  # (its packed rows), replacing the value above; train prints what it chose.
  c.num_epochs = 0.0
  c.batch_size = 256               # global, in sequences, per optimizer step
  c.micro_batches = 1              # gradient accumulation: batch_size / this per pass
  c.max_len = 128                  # tokens per sequence, [CLS]/[SEP] included
  c.stop_at = 0                    # stop (with a checkpoint) after this step,
                                   # to split a run into jobs; 0: total_steps
  c.checkpoint_every = 1000        # steps
  c.eval_every = 500               # steps (0: never)
  # Metrics are fetched from the devices (and written) every log_every steps,
  # and before each evaluation and checkpoint; a non-finite loss is caught
  # within this many steps, never after a checkpoint of it.
  c.log_every = 10
  c.eval_batches = 4               # held-out batches per evaluation
  # Evaluation also measures KL to the teacher and the teacher's accuracy
  # whenever a teacher is loaded, even one the loss does not use (an MLM-only
  # student initialised from it). False: never (the "teacher" of a teacher-free
  # run is only where its weights start).
  c.eval_teacher = True
  c.data = ''                      # a directory made by prepare, or 'synthetic'
  # Rows of max_len hold several prepared sequences each (block-diagonal
  # attention, positions restarting per sequence): no padding wasted. False: one
  # sequence a row, padded to max_len.
  c.packing = True
  # Dynamic masking, as the reference: mask_prob of the real non-special tokens
  # are chosen (with probability ~ count^-smoothing: 0 uniform, as BERT; the
  # reference's distillation uses 0.7), and of those mask_token become [MASK],
  # random_token a random id, keep stay as they are.
  c.masking = ml_collections.ConfigDict(dict(
      mask_prob=0.15, smoothing=0.0, mask_token=0.8, random_token=0.1, keep=0.1))
  c.dtype = 'float32'              # compute dtype: float32 or bfloat16
  # A non-finite loss or gradient: 'stop' (one line naming the last good
  # checkpoint) or 'skip' (leave the weights unchanged, count it, go on; stops
  # after max_skipped_steps in a row).
  c.nonfinite = 'stop'
  # MFU's denominator, FLOP/s per device; 0 measures a matmul at start (on a
  # TPU v4 chip, say, 275e12 for bfloat16).
  c.peak_flops_per_device = 0.0
  c.max_skipped_steps = 10

  c.model = ml_collections.ConfigDict()
  # The attention kernel: 'xla', 'splash' (TPU), 'cudnn' (GPU) or 'auto'
  # (models/attention.py); per layer rematerialisation: 'none', 'dots', 'full'.
  c.model.attention = 'xla'
  c.model.remat = 'none'
  c.model.pallas_interpret = False     # tests: Pallas kernels on a CPU
  # The teacher: BERT-base by default.
  c.model.teacher = ml_collections.ConfigDict(dict(
      vocab_size=30522, hidden_size=768, num_layers=12, num_heads=12,
      intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
      layer_norm_eps=1e-12, hidden_act='gelu', tie_word_embeddings=True,
      # 'bert' (also DistilBERT, multilingual BERT), 'roberta' or 'xlm-roberta';
      # set from the teacher checkpoint like the shape above.
      family='bert', pad_token_id=0))
  # The student: the teacher's shape with fewer layers, no token types. The
  # placeholders (None) mean "as the teacher".
  c.model.student = ml_collections.ConfigDict(dict(
      num_layers=6,
      hidden_size=config_dict.placeholder(int),
      num_heads=config_dict.placeholder(int),
      intermediate_size=config_dict.placeholder(int),
      hidden_dropout=0.1, attention_dropout=0.1))

  c.student_init = ml_collections.ConfigDict(dict(
      source='teacher',            # 'teacher' (copy layers) or 'random'
      layer_map=(),                # () = evenly spaced; (0, 2, 4, 7, 9, 11) for 12->6
      freeze_position_embeddings=True,   # the released DistilBERT did
      # A random student's positions: 'sinusoidal' (fixed, as the reference's
      # sinusoidal_pos_embds; frozen) or 'learned' (N(0, 0.02); then set
      # freeze_position_embeddings=False).
      random_positions='sinusoidal',
      fold_token_type=False))      # add teacher type-0 embedding into positions

  c.loss = ml_collections.ConfigDict(dict(
      temperature=2.0, alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, alpha_mse=0.0,
      restrict_ce_to_mask=False))

  c.optim = ml_collections.ConfigDict(dict(
      learning_rate=5e-4, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.0,
      warmup_fraction=0.05, clip_norm=5.0,
      # ((regex over parameter paths, learning-rate multiplier), ...): e.g.
      # (('cls/.*', 20.0),) trains a new MLM head 20x faster than the encoder.
      lr_mults=()))

  # Device mesh: one axis may be -1 (all remaining devices).
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  return c


def attention_kernel(c, head_dim: int, dropout: float) -> tuple[str, str | None]:
  """(kernel, notice) of `model.attention` for a model of `head_dim` whose
  attention dropout is `dropout` (see `models.attention.resolve`); a choice
  that cannot run here is one ConfigError line."""
  from jaxdistil.models import attention
  try:
    return attention.resolve(c.model.attention, head_dim=head_dim, dtype=c.dtype,
                             dropout=dropout, max_len=c.max_len,
                             interpret=c.model.pallas_interpret)
  except attention.AttentionError as e:
    raise ConfigError(str(e)) from None


def teacher_config(c) -> BertConfig:
  t = c.model.teacher
  kernel, _ = attention_kernel(c, t.hidden_size // t.num_heads, 0.0)
  return BertConfig(
      vocab_size=t.vocab_size, hidden_size=t.hidden_size, num_layers=t.num_layers,
      num_heads=t.num_heads, intermediate_size=t.intermediate_size,
      max_position_embeddings=t.max_position_embeddings,
      type_vocab_size=t.type_vocab_size, layer_norm_eps=t.layer_norm_eps,
      hidden_act=t.hidden_act, tie_word_embeddings=t.tie_word_embeddings,
      family=t.family, pad_token_id=t.pad_token_id,
      hidden_dropout=0.0, attention_dropout=0.0, dtype=c.dtype,
      attention=kernel, pallas_interpret=c.model.pallas_interpret,
      remat=c.model.remat)


def student_config(c) -> BertConfig:
  s = c.model.student
  teacher = teacher_config(c)
  sizes = {k: s[k] for k in ('hidden_size', 'num_heads', 'intermediate_size')
           if s[k] is not None}
  hidden = sizes.get('hidden_size', teacher.hidden_size)
  heads = sizes.get('num_heads', teacher.num_heads)
  kernel, _ = attention_kernel(c, hidden // heads, s.attention_dropout)
  return student_init.student_config(
      teacher, s.num_layers, hidden_dropout=s.hidden_dropout,
      attention_dropout=s.attention_dropout, attention=kernel, **sizes)


def loss_config(c) -> losses.LossConfig:
  return losses.LossConfig(**c.loss.to_dict())


def optim_config(c) -> optim.OptimConfig:
  d = c.optim.to_dict()
  d['lr_mults'] = tuple(tuple(rule) for rule in d.get('lr_mults') or ())
  return optim.OptimConfig(**d)


def layer_map(c) -> tuple[int, ...]:
  t, s = teacher_config(c), student_config(c)
  if c.student_init.layer_map:
    return tuple(c.student_init.layer_map)
  return student_init.default_layer_map(t.num_layers, s.num_layers)


def validate(c, num_devices: int, mesh_shape: tuple[int, int, int],
             teacher: BertConfig | None = None,
             student: BertConfig | None = None) -> None:
  """Raise ConfigError (one line) for a config that cannot work.

  `teacher`/`student` replace the configs' model shapes when they come from
  elsewhere (an imported Hugging Face teacher brings its own vocabulary).
  """
  t = teacher or teacher_config(c)
  s = student or student_config(c)
  loss = loss_config(c)

  def fail(msg):
    raise ConfigError(msg)

  for name, m in (('model.teacher', t), ('model.student', s)):
    if m.hidden_size % m.num_heads:
      fail(f'{name}.hidden_size={m.hidden_size} is not divisible by '
           f'num_heads={m.num_heads}: choose a head count that divides it')
  if t.hidden_act not in model_config.ACTIVATIONS:
    fail(f'model.teacher.hidden_act={t.hidden_act!r} is not supported: use one '
         f'of {model_config.ACTIVATIONS}')
  if c.nonfinite not in ('stop', 'skip'):
    fail(f'nonfinite={c.nonfinite!r}: use "stop" or "skip"')
  if c.dtype not in ('float32', 'bfloat16'):
    fail(f'dtype={c.dtype!r}: use float32 or bfloat16')
  if loss.temperature <= 0:
    fail(f'loss.temperature={loss.temperature} must be > 0 (the reference uses 2.0)')
  weights = {k: loss.weight(k) for k in losses.TERMS}
  if any(w < 0 for w in weights.values()):
    fail(f'loss weights must be >= 0, got {weights}')
  if not any(weights.values()):
    fail('all loss weights (loss.alpha_ce, alpha_mlm, alpha_cos, alpha_mse) are 0: '
         'nothing to train; the reference uses 5/2/1/0')
  if s.vocab_size != t.vocab_size:
    fail(f'student vocab_size={s.vocab_size} differs from the teacher\'s '
         f'{t.vocab_size}: distillation compares distributions over one vocabulary')
  if loss.alpha_cos and s.hidden_size != t.hidden_size:
    fail(f'loss.alpha_cos={loss.alpha_cos} compares hidden states but '
         f'model.student.hidden_size={s.hidden_size} differs from the teacher\'s '
         f'{t.hidden_size}: set loss.alpha_cos=0 or match the hidden sizes')
  source = c.student_init.source
  if source not in ('teacher', 'random'):
    fail(f'student_init.source={source!r}: use "teacher" or "random"')
  if source == 'teacher':
    if s.num_layers > t.num_layers:
      fail(f'model.student.num_layers={s.num_layers} exceeds the teacher\'s '
           f'{t.num_layers}: a student initialised from the teacher needs fewer layers')
    for field in ('hidden_size', 'num_heads', 'intermediate_size'):
      if getattr(s, field) != getattr(t, field):
        fail(f'student_init.source="teacher" copies weights but model.student.'
             f'{field}={getattr(s, field)} differs from the teacher\'s '
             f'{getattr(t, field)}: set student_init.source="random" or match it')
    if c.student_init.layer_map:
      try:
        student_init.check_layer_map(c.student_init.layer_map, t.num_layers,
                                     s.num_layers)
      except ValueError as e:
        fail(str(e))
    if c.student_init.fold_token_type and not t.type_vocab_size:
      fail('student_init.fold_token_type=True but the teacher has no token-type '
           'embeddings (model.teacher.type_vocab_size=0): set it to False')
  positions = min(t.max_position_embeddings, s.max_position_embeddings)
  if c.max_len + t.position_offset > positions:
    fail(f'max_len={c.max_len} exceeds the {positions - t.position_offset} '
         f'positions the teacher has'
         + (f' ({positions} less the {t.position_offset} RoBERTa sets aside)'
            if t.position_offset else '') + ': lower max_len')
  if t.family not in model_config.FAMILIES:
    fail(f'model.teacher.family={t.family!r}: use one of {", ".join(model_config.FAMILIES)}')
  if c.model.remat not in model_config.REMAT:
    fail(f'model.remat={c.model.remat!r} is not one of {", ".join(model_config.REMAT)}: '
         f'use none, dots (keep matmul outputs) or full (recompute each layer)')
  m = c.masking
  if not 0.0 < m.mask_prob <= 1.0:
    fail(f'masking.mask_prob={m.mask_prob} must be in (0, 1] (the reference uses '
         f'0.15)')
  if not 0.0 <= m.smoothing <= 1.0:
    fail(f'masking.smoothing={m.smoothing} must be in [0, 1] (0: uniform; the '
         f'reference uses 0.7)')
  for name in ('mask_token', 'random_token', 'keep'):
    if not 0.0 <= m[name] <= 1.0:
      fail(f'masking.{name}={m[name]} must be in [0, 1]')
  if abs(m.mask_token + m.random_token + m.keep - 1.0) > 1e-6:
    fail(f'masking.mask_token + random_token + keep = {m.mask_token} + '
         f'{m.random_token} + {m.keep} = '
         f'{m.mask_token + m.random_token + m.keep:g}, not 1 (the reference '
         f'uses 0.8 / 0.1 / 0.1)')
  if c.num_epochs < 0:
    fail(f'num_epochs={c.num_epochs} must be >= 0 (0: use total_steps)')
  if c.num_epochs and c.data == 'synthetic':
    fail('num_epochs needs prepared data, but data="synthetic" has no epochs: '
         'set total_steps instead')
  positions = c.student_init.random_positions
  if positions not in ('sinusoidal', 'learned'):
    fail(f'student_init.random_positions={positions!r}: use "sinusoidal" or '
         f'"learned"')
  if (source == 'random' and positions == 'learned'
      and c.student_init.freeze_position_embeddings):
    fail('student_init.random_positions="learned" with freeze_position_embeddings'
         '=True would keep random positions fixed: set freeze_position_embeddings'
         '=False, or random_positions="sinusoidal"')
  if c.batch_size < 1:
    fail(f'batch_size={c.batch_size} must be >= 1 (rows per optimizer step)')
  if c.optim.lr_mults:
    import jax
    from jaxdistil.models import bert
    abstract = jax.eval_shape(lambda: bert.init(s, jax.random.key(0)))
    try:
      optim.lr_multipliers(abstract, optim_config(c).lr_mults)
    except ValueError as e:
      fail(str(e))
  if c.micro_batches < 1:
    fail(f'micro_batches={c.micro_batches} must be >= 1')
  if c.log_every < 1:
    fail(f'log_every={c.log_every} must be >= 1 (steps between metric fetches)')
  if c.total_steps < 1:
    fail(f'total_steps={c.total_steps} must be >= 1')
  data_parallel = mesh_shape[0] * mesh_shape[1]
  per_pass = data_parallel * c.micro_batches
  if c.batch_size % per_pass:
    fail(f'batch_size={c.batch_size} is not divisible by data x fsdp x micro_batches'
         f' = {mesh_shape[0]} x {mesh_shape[1]} x {c.micro_batches} = {per_pass}: '
         f'use a multiple of {per_pass}, e.g. '
         f'{max(per_pass, c.batch_size // per_pass * per_pass)}')
  if math.prod(mesh_shape) != num_devices:
    fail(f'mesh {mesh_shape} does not use the {num_devices} devices present')
