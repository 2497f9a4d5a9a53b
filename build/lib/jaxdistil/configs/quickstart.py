"""The offline quick start: a small teacher pre-trained by MLM, then distilled.

    python -m jaxdistil.quickstart --workdir=runs/quickstart

runs both stages (and everything before them) in one command. The two stages
are ordinary train configs, also usable by hand once the data exists:

  quickstart.py:teacher   teacher-free MLM pre-training of a 4-layer, 128-wide
                          BERT (no token types) from random weights
  quickstart.py:student   DistilBERT's triple loss into a 2-layer student copied
                          from teacher layers (0, 3)

Sizes are chosen so that both stages take about two minutes on a laptop CPU;
`data` and `teacher` are filled in by the quickstart command.
"""

from jaxdistil import config_lib

VOCAB_SIZE = 4096


def _shared():
  c = config_lib.default_config()
  c.model.teacher.update(vocab_size=VOCAB_SIZE, hidden_size=128, num_layers=4,
                         num_heads=4, intermediate_size=512,
                         max_position_embeddings=64, type_vocab_size=0)
  c.max_len = 64
  c.batch_size = 32
  c.eval_batches = 8
  c.optim.warmup_fraction = 0.05
  return c


def get_config(stage: str = 'student'):
  c = _shared()
  if stage == 'teacher':
    # Teacher-free MLM: the model trained here *is* the teacher of the next stage,
    # so it is configured as a "student" as deep as the teacher, from scratch.
    c.teacher = 'random'
    c.model.student.num_layers = 4
    c.model.student.hidden_dropout = 0.1
    c.model.student.attention_dropout = 0.1
    c.student_init.source = 'random'
    c.student_init.random_positions = 'learned'
    c.student_init.freeze_position_embeddings = False
    c.loss.update(alpha_ce=0.0, alpha_cos=0.0, alpha_mlm=1.0)
    c.optim.learning_rate = 2e-3
    c.total_steps = 400
  elif stage == 'student':
    c.teacher = ''                  # the teacher stage's workdir
    c.model.student.num_layers = 2
    c.optim.learning_rate = 1e-3
    c.total_steps = 200
  else:
    raise ValueError(f'unknown quickstart stage {stage!r}: use teacher or student')
  c.checkpoint_every = c.total_steps // 2
  c.eval_every = c.total_steps // 2
  return c
