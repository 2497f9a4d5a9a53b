"""A classifier's own head, run without training: its logits over encoded rows
(`classifier_logits`, which also gives a teacher's soft targets) and its dev
score on a task (`score_classifier`, what `glue --eval_only` runs).

The head's outputs are first put in the task's class order (`glue.labels`),
so a model whose `id2label` orders MNLI's classes differently is scored on
the right ones.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxdistil import sharding
from jaxdistil.convert import classifier as classifier_lib
from jaxdistil.glue import data as glue_data
from jaxdistil.glue import heads, labels, step
from jaxdistil.glue import metrics as glue_metrics
from jaxdistil.glue.batching import bucket_lengths, eval_padding_fraction
from jaxdistil.glue.config import FinetuneConfig
from jaxdistil.glue.tasks import Task
from jaxdistil.models import bert


class Predictor:
  """A classifier placed on the mesh, with its jitted prediction."""

  def __init__(self, bert_cfg: bert.BertConfig, params: dict, head: dict,
               cfg: FinetuneConfig):
    self.mesh = step.mesh_of(cfg)
    step.check_settings(bert_cfg, cfg, self.mesh)
    self.batch_size = step.eval_batch_size(cfg, self.mesh)
    self.buckets = bucket_lengths(cfg.max_len, cfg.length_buckets)
    cfg_inference = bert_cfg.replace(hidden_dropout=0.0, attention_dropout=0.0)
    encoder, rest, _ = heads.split_encoder_params(bert_cfg, jax.device_get(params))
    tree = {'encoder': encoder, 'head': jax.device_get(head)}
    p_sh = step.param_shardings(bert_cfg, tree, self.mesh)
    rest_sh = jax.tree.map(lambda _: NamedSharding(self.mesh, P()), rest)
    batch_sh = sharding.batch_sharding(self.mesh)
    self.params = jax.device_put(tree, p_sh)
    self.rest = jax.device_put(rest, rest_sh)
    self.predict = jax.jit(functools.partial(step.predict_step, cfg_inference),
                           in_shardings=(p_sh, rest_sh, batch_sh),
                           out_shardings=batch_sh)

  def logits(self, arrays: dict) -> np.ndarray:
    """[N, outputs] float32 logits of every row of `arrays`, in order."""
    with sharding.constraints(self.mesh):
      return step.predict_logits(self.predict, self.params, self.rest, arrays,
                                 self.batch_size, self.mesh, self.buckets)


def task_head(task: Task, head: dict, info, where: str) -> tuple[dict, str | None]:
  """The head with its outputs in `task`'s class order, and the notice (if
  any) that `labels.match` gave."""
  order, notice = labels.match(task, info, where)
  return classifier_lib.permute(jax.device_get(head), order), notice


def score_classifier(task: Task, data_dir, bert_cfg: bert.BertConfig,
                     params: dict, head: dict, info, tokenizer, *,
                     max_len: int = 128, source: str = 'tsv',
                     where: str = 'the model', **overrides) -> dict:
  """The task's dev metrics of the classifier's own head, in `run_task`'s
  result shape (one entry in 'per_seed', with seed None) plus 'eval_only'."""
  cfg = FinetuneConfig(max_len=max_len, **overrides)
  head, notice = task_head(task, head, info, where)
  if notice:
    print(f'jaxdistil.glue: notice: {notice}', flush=True)
  dev = glue_data.encode_dev(task, data_dir, tokenizer, cfg.max_len, source,
                             glue_data.style_of(bert_cfg.family))
  glue_data.check_vocab(dev.values(), bert_cfg.vocab_size)
  predictor = Predictor(bert_cfg, params, head, cfg)
  metrics = step.evaluate(task, predictor.logits, dev)
  score = glue_metrics.task_score(metrics, task.metric_keys())
  eval_padding = eval_padding_fraction(dev, predictor.batch_size,
                                       predictor.buckets)
  settings = cfg.settings()
  return {'task': task.name, 'score': score, 'metrics': metrics,
          'per_seed': [{'seed': None, 'metrics': metrics, 'score': score}],
          'eval_only': True, 'labels_assumed_in_order': bool(notice),
          'num_train': 0,
          'num_dev': {k: int(len(v['labels'])) for k, v in dev.items()},
          'skipped_rows': 0, 'buckets': list(predictor.buckets),
          'padding_fraction': {'train': None, 'eval': eval_padding},
          'config': settings}
