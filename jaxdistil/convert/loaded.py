"""`Loaded`: a model read from any source, the one thing every loader returns."""

from __future__ import annotations

import dataclasses

from jaxdistil.models.config import BertConfig


@dataclasses.dataclass
class Loaded:
  config: BertConfig
  params: dict                         # float32 leaves, placed if shardings were given
  layout: str                          # 'bert' or 'distilbert'
  tokenizer_dir: str | None            # a folder with vocab.txt / tokenizer.json
  pooler: dict | None = None           # {'dense': {'kernel', 'bias'}}: BERT's pooler
  source: str = ''                     # what was asked for (path, id, workdir step)
  kind: str = ''                       # 'hf', 'model_dir' or 'workdir'
  fresh_head: bool = False             # an initialised, untrained MLM head
  warnings: list = dataclasses.field(default_factory=list)
  # A sequence classifier's head (`glue.heads`' tree, BERT's pooler inside)
  # and what its outputs mean (`convert.classifier.ClassifierInfo`).
  head: dict | None = None
  classifier: object | None = None

  def params_with_pooler(self) -> dict:
    """The encoder's params with BERT's pooler (under 'pooler') when it has
    one: what a classifier fine-tunes."""
    params = dict(self.params)
    if self.pooler is not None:
      params['pooler'] = self.pooler
    return params
