"""Task distillation's two models, as `glue.run` sets them up: the teacher (a
fine-tuned classifier, on its own tokenizer, its logits cached in the
workdir: `make_teacher`) and a student drawn from a model's layers
(`student_of`), with the distillation settings of the command line
(`kd_overrides`)."""

from __future__ import annotations

import os

from jaxdistil.glue import data as glue_data
from jaxdistil.glue.tasks import GlueError


def load_classifier(path: str):
  """`convert.load_model(path)` (a `Loaded`), errors as one GlueError line."""
  from jaxdistil.convert import load_model
  try:
    return load_model(path, init_missing_head=True)
  except ValueError as e:
    raise GlueError(f'cannot load model {path!r}: '
                    f'{(str(e).splitlines() or [""])[0]}') from None


def student_of(bert_cfg, params: dict, layers, where: str):
  """A smaller model drawn from `params` by `student_init`'s rule (the layers
  named, DistilBERT's layout, token type 0 folded into the positions), with
  no general distillation: the paper's initialisation, fine-tuned directly."""
  from jaxdistil.models import student_init
  try:
    layer_map = tuple(int(i) for i in layers)
    cfg = student_init.student_config(bert_cfg, len(layer_map))
    student = student_init.init_from_teacher(
        params, bert_cfg, cfg, layer_map,
        fold_token_type=bool(bert_cfg.type_vocab_size))
  except (TypeError, ValueError) as e:
    raise GlueError(f'--student_layers={",".join(map(str, layers))} for '
                    f'{where}: {str(e).splitlines()[0]}') from None
  return cfg, student


def kd_overrides(args) -> dict:
  if not getattr(args, 'teacher', None):
    return {}
  out = {'kd_temperature': args.kd_temperature, 'kd_alpha': args.kd_alpha,
         'kd_beta': args.kd_beta,
         'kd_intermediate_steps': getattr(args, 'kd_intermediate_steps', 0)}
  if getattr(args, 'kd_intermediate_lr', None) is not None:
    out['kd_intermediate_lr'] = args.kd_intermediate_lr
  return out


def _load_teacher(path: str, task):
  """(the classifier at `path`, its head in `task`'s class order, its own
  tokenizer); a model without a head or without tokenizer files, or one
  fine-tuned on another task, is refused in one line."""
  from jaxdistil.glue import scoring
  loaded = load_classifier(path)
  if loaded.head is None:
    raise GlueError(f'--teacher={path} has no classifier head: give a model '
                    f'fine-tuned on {task.name} (glue --save, or an HF '
                    f'*ForSequenceClassification)')
  check_task(task, loaded.classifier, path)
  head, _ = scoring.task_head(task, loaded.head, loaded.classifier, path)
  if not loaded.tokenizer_dir:
    raise GlueError(f'--teacher={path} has no tokenizer files: the teacher '
                    f'tokenizes the text itself')
  from jaxdistil.data import tokenizer as tokenizer_lib
  try:
    tok = tokenizer_lib.load(loaded.tokenizer_dir)
  except ValueError as e:
    raise GlueError(str(e).splitlines()[0]) from None
  return loaded, head, tok


def make_teacher(path: str, task, max_len: int, workdir: str | None):
  """`teacher(examples, split) -> logits` for `run_task`: the fine-tuned
  classifier at `path`, its head in `task`'s class order, on its own
  tokenizer (teacher and student may tokenize differently). With a
  `workdir`, the logits are cached there (`glue.teacher_cache`), keyed by the
  teacher and the data; without one they are computed once per run."""
  from jaxdistil.glue import scoring, teacher_cache
  from jaxdistil.glue.config import FinetuneConfig
  loaded, head, tok = _load_teacher(path, task)
  style = glue_data.style_of(loaded.config.family)
  cfg = FinetuneConfig(max_len=min(max_len, loaded.config.max_position_embeddings))
  predictor = []
  fingerprint = []

  def compute(examples):
    if not predictor:
      predictor.append(scoring.Predictor(loaded.config, loaded.params, head, cfg))
    return predictor[0].logits(glue_data.encode(examples, tok, cfg.max_len, style))

  def teacher(examples, split: str):
    if not workdir:
      return compute(examples)
    data = teacher_cache.fingerprint_examples(examples, cfg.max_len, tok, style)
    return teacher_cache.load_or_compute(
        os.path.join(workdir, 'teacher_logits'), task.name, split,
        fingerprint_(), data, lambda: compute(examples))

  def online(student_tokenizer, student_family: str, max_len: int):
    """(config, {'encoder', 'head'}, rest) for `run_task(online_teacher=)`:
    only where the teacher would read the student's own tokens."""
    from jaxdistil.data import tokenizer as tokenizer_lib
    same = (tokenizer_lib.fingerprint(tok) ==
            tokenizer_lib.fingerprint(student_tokenizer)
            and style == glue_data.style_of(student_family))
    if not same:
      raise GlueError(f'--kd_online runs the teacher on the student\'s tokens, '
                      f'but {path} has another tokenizer: drop --kd_online (the '
                      f'cached mode tokenizes the text for each)')
    if max_len > loaded.config.max_position_embeddings:
      raise GlueError(f'--max_len={max_len} exceeds the teacher\'s '
                      f'{loaded.config.max_position_embeddings} positions')
    from jaxdistil.glue import heads
    encoder, rest, _ = heads.split_encoder_params(loaded.config, loaded.params)
    return loaded.config, {'encoder': encoder, 'head': head}, rest

  def fingerprint_():
    if not fingerprint:
      fingerprint.append(teacher_cache.fingerprint_teacher(
          path if os.path.isdir(path) else loaded))
    return fingerprint[0]

  teacher.online = online
  teacher.fingerprint = fingerprint_
  teacher.path = path
  # LABEL_0, LABEL_1, ...: the order is read from the data (`teacher_check`).
  teacher.generic = bool(loaded.classifier.generic) and not task.is_regression
  return teacher


def check_task(task, info, path: str) -> None:
  """A teacher that says it was fine-tuned on another GLUE task is refused
  (HF's `finetuning_task`, or ours); a name that is no GLUE task is let be."""
  from jaxdistil.glue.tasks import get as get_task
  said = getattr(info, 'task', None)
  if not said:
    return
  try:
    theirs = get_task(str(said)).name
  except GlueError:
    return
  if theirs != task.name:
    raise GlueError(f'--teacher={path} was fine-tuned on {theirs} (its config '
                    f'says so), not {task.name}: give a teacher fine-tuned on '
                    f'{task.name}')
