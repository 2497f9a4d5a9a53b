"""Tiny teacher and student: a step in milliseconds, for tests and smoke runs.

    python -m jaxdistil.bench --config=configs/tiny.py
"""

from jaxdistil import config_lib


def get_config():
  c = config_lib.default_config()
  c.model.teacher.update(vocab_size=128, hidden_size=32, num_layers=2, num_heads=4,
                         intermediate_size=64, max_position_embeddings=32)
  c.model.student.num_layers = 1
  c.max_len = 16
  c.batch_size = 8
  c.total_steps = 100
  c.checkpoint_every = 50
  c.eval_every = 50
  return c
