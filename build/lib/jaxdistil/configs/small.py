"""A real distillation that fits a CPU: a 4-layer, 256-wide teacher and a 2-layer
student on the shared corpus (bert-base-uncased vocabulary), sequences of 128.

    python -m jaxdistil.prepare \
        --source='../shared/data/corpus/wikipedia/wiki_*,../shared/data/corpus/gutenberg/*.txt' \
        --tokenizer=../shared/data/vocab --max_len=128 --output=data/shared128
    python -m jaxdistil.train --config=configs/small.py --workdir=runs/small

Without an imported teacher the teacher has random weights; first train one
teacher-free (`--config.loss.alpha_ce=0 --config.loss.alpha_cos=0
--config.student_init.source=random --config.student_init.random_positions=learned
--config.student_init.freeze_position_embeddings=False` with the student sized as
the teacher).
"""

from jaxdistil import config_lib


def get_config():
  c = config_lib.default_config()
  c.model.teacher.update(hidden_size=256, num_layers=4, num_heads=4,
                         intermediate_size=1024, max_position_embeddings=512)
  c.model.student.num_layers = 2
  c.data = 'data/shared128'
  c.max_len = 128
  c.batch_size = 32
  c.micro_batches = 4           # passes of 8 sequences: the fast size on 2 cores
  c.total_steps = 2000
  c.checkpoint_every = 200
  c.eval_every = 200
  c.optim.learning_rate = 5e-4
  c.masking.smoothing = 0.7       # the reference's distillation masking
  return c
