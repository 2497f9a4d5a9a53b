"""The paper's tables 1 and 4 at a budget: what `python -m jaxdistil.replicate`
runs, stage by stage.

    python -m jaxdistil.replicate --teacher=DIR --workdir=DIR \
        --config=configs/replicate.py:small [--config.glue.seeds_other=3] ...

`get_config('BUDGET')` is the whole plan (the head stage, the distillation base,
the variants and the GLUE settings); `get_config('BUDGET,head')` and
`get_config('BUDGET,distil')` are the two train configs alone, so a stage can be
rerun by hand:

    python -m jaxdistil.train --config=configs/replicate.py:small,head \
        --config.teacher=IMPORTED --config.data=DATA --workdir=DIR/teacher

Budgets:
  tiny   seconds on a tiny random teacher: CI's end-to-end run of every stage.
  small  a few CPU hours with MiniLM-L6-H384 (6 layers, hidden 384) as the
         teacher and a 3-layer student, the paper's halving of depth: sequences
         of 128 tokens, packed, 32 rows a step; 400 steps (1.6M real tokens) for
         the head and for each student; GLUE on CoLA, SST-2, MRPC and WNLI with
         the training sets capped at 10,000 examples (only SST-2's 67,349 are
         cut) and 3 seeds for the teacher and the student of table 1, 1 for
         the other rows.

The head stage gives a bare encoder (a BertModel, trained for something other
than masked-LM) a working MLM head: teacher-free MLM training of the whole
model, copied layer for layer, the new head at 20x the encoder's learning rate.
Its token-type-0 embedding is folded into the positions (`fold_token_type`):
the adapted model has the DistilBERT layout, like its students, and computes
what the original did on single-segment input.
"""

import ml_collections

from jaxdistil import config_lib

BUDGETS = ('tiny', 'small')
STAGES = ('head', 'distil')


def _common(budget: str):
  c = config_lib.default_config()
  c.masking.smoothing = 0.7          # the reference's distillation masking
  c.optim.warmup_fraction = 0.05
  if budget == 'tiny':
    c.max_len, c.batch_size, c.micro_batches = 32, 8, 1
    c.total_steps, c.checkpoint_every, c.eval_every, c.eval_batches = 4, 2, 2, 1
    c.peak_flops_per_device = 1e11   # no matmul measurement in CI
  elif budget == 'small':
    c.max_len, c.batch_size, c.micro_batches = 128, 32, 4
    c.total_steps, c.checkpoint_every, c.eval_every, c.eval_batches = 400, 50, 50, 16
  else:
    raise ValueError(f'unknown budget {budget!r}: use one of {", ".join(BUDGETS)}')
  return c


def head_config(budget: str):
  """Teacher-free MLM of the whole teacher (every layer copied), new head fast."""
  c = _common(budget)
  c.teacher = ''                       # the imported checkpoint (replicate sets it)
  c.student_init.source = 'teacher'
  c.student_init.fold_token_type = True
  c.student_init.freeze_position_embeddings = False
  c.model.student.num_layers = 6       # all the teacher's (replicate sets it)
  c.loss.update(alpha_ce=0.0, alpha_cos=0.0, alpha_mlm=1.0)
  c.optim.learning_rate = 1e-4
  c.optim.lr_mults = (('cls/.*', 20.0),)
  c.eval_teacher = False               # its "teacher" is its own starting point
  return c


def distil_config(budget: str):
  """The triple loss into a student of half the teacher's depth (the variants
  of table 4 edit this; see jaxdistil.ablate)."""
  c = _common(budget)
  c.teacher = ''                       # the head stage's workdir
  c.model.student.num_layers = 3 if budget == 'small' else 1
  c.student_init.layer_map = (0, 2, 5) if budget == 'small' else ()
  c.optim.learning_rate = 5e-4
  return c


def get_config(arg: str = 'small'):
  budget, _, stage = arg.partition(',')
  if stage == 'head':
    return head_config(budget)
  if stage == 'distil':
    return distil_config(budget)
  if stage:
    raise ValueError(f'unknown stage {stage!r}: use one of {", ".join(STAGES)}')
  plan = ml_collections.ConfigDict()
  plan.budget = budget
  plan.head = head_config(budget)
  plan.distil = distil_config(budget)
  plan.shard_size = 20000 if budget == 'small' else 200   # prepare's, sequences
  # Table 1's student and MLM-only baseline first, then table 4's rows.
  plan.variants = ('full', 'mlm_only', 'random_init', 'no_ce', 'no_cos', 'no_mlm')
  plan.glue = ml_collections.ConfigDict(dict(
      # The four shared tasks; a tiny run checks the path on two of them.
      tasks=(('CoLA', 'SST-2', 'MRPC', 'WNLI') if budget == 'small'
             else ('SST-2', 'MRPC')),
      seeds_table1=3 if budget == 'small' else 2,   # teacher and `full`
      seeds_other=1,
      epochs=3.0 if budget == 'small' else 1.0,
      learning_rate=5e-5, batch_size=32,
      max_len=128 if budget == 'small' else 16,
      max_train_examples=10000 if budget == 'small' else 24,
      # Length buckets cut GLUE's padding severalfold; a tiny run has too
      # little data for them to pay for their compiles.
      length_buckets=budget == 'small'))
  return plan
