"""The paper's setting: a BERT-base teacher distilled into a 6-layer student.

Teacher: bert-base-uncased (12 layers, hidden 768, 12 heads, vocabulary 30,522).
Student: 6 layers drawn from teacher layers (0, 2, 4, 7, 9, 11), no token types,
position embeddings frozen. Loss 5 * L_ce + 2 * L_mlm + 1 * L_cos at T = 2. AdamW
(0.9, 0.98, eps 1e-6), lr 5e-4, 5% warm-up then linear decay, clipping at 5.

Masking as the reference's distiller: 15% of the real tokens, chosen with
probability ~ count^-0.7 (`mlm_smoothing=0.7`: rare tokens more often), 80% of
them [MASK], 10% random, 10% kept.

Batch: 4,096 rows of 512 tokens per step (the paper's "up to 4K" sequences; the
reference reached 2,000 through 50 accumulated micro-batches on 8 GPUs), here as
16 micro-batches of 256. Rows are packed (several prepared sequences a row, about
1% padding on the shared corpus), so a step holds ~2.1M real tokens.
Length: 3 epochs, as the reference (`num_epochs=3`); `train` computes the steps
from the prepared data's packed rows and prints them. For English Wikipedia +
BookCorpus (~3.3B words, ~4.3B WordPiece tokens) that is about
3 x 4.3B / (4,096 x 512 x 0.99) ~ 6,200 steps; `total_steps` (6,000) is used
only when num_epochs is set to 0.

Benchmark of the step at sequence 128 (random weights, random tokens; on a 2-core
CPU, passes of 8 sequences are the fastest, see BENCHMARKS.md):

    python -m jaxdistil.bench --config=configs/distilbert_base.py \
        --config.max_len=128 --config.batch_size=32 --config.micro_batches=4
"""

from jaxdistil import config_lib


def get_config():
  c = config_lib.default_config()
  c.teacher = 'bert-base-uncased'
  c.num_epochs = 3.0
  c.total_steps = 6000
  c.batch_size = 4096
  c.micro_batches = 16
  c.max_len = 512
  c.checkpoint_every = 500
  c.eval_every = 500
  c.student_init.layer_map = (0, 2, 4, 7, 9, 11)
  c.masking.smoothing = 0.7
  return c
