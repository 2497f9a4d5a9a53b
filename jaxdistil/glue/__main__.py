"""Fine-tune and evaluate a checkpoint on GLUE; print the paper's Table 1 row.

    python -m jaxdistil.glue --model=DIR --task=all --data_dir=glue_data \
        [--seeds=5] [--output=results/student.json]
    python -m jaxdistil.glue --model=DIR --task=tfds:glue/sst2 --data_dir=~/tfds
    python -m jaxdistil.glue --model=DIR --task=SST-2 --data_dir=glue_data \
        --seeds=3 --save=models/sst2          # a Hugging Face classifier
    python -m jaxdistil.glue --model=HF_CLASSIFIER --task=SST-2 \
        --data_dir=glue_data --eval_only      # score its own head
    python -m jaxdistil.glue --model=STUDENT --teacher=HF_CLASSIFIER \
        --task=SST-2 --data_dir=glue_data --workdir=runs/kd --save=models/small

`--task` is one task (CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE, WNLI), a
comma-separated list, `all` (every task whose files are in `--data_dir`), or
`tfds:glue/<config>` to read a built TensorFlow Datasets copy (`--source=tfds`
does the same for names and `all`). `--output` gets the JSON results and, next
to it (`.md`), the markdown table. Each task's JSON has `padding_fraction`
({'train', 'eval'}: padding tokens over all tokens of the batches run, which
length buckets keep low; `--nolength_buckets` pads everything to --max_len).
`--save=DIR` (one task) writes the median seed's fine-tuned model as the
layout's `*ForSequenceClassification` with the task's label names, which
`AutoModelForSequenceClassification` and `pipeline('text-classification')`
load. `--eval_only` scores a classifier's own head (an HF classifier or one
saved here); its labels are matched to the task's by name (LABEL_0, LABEL_1,
... are taken in order, with a notice).
`--teacher=DIR` distils a fine-tuned classifier into --model while it is
fine-tuned (`glue.kd`): alpha*T^2*KL(teacher || student at T) + (1-alpha)*CE
for classes, beta*MSE(teacher) + (1-beta)*MSE(label) for STS-B; a transfer
set's rows get the teacher's term alone. The teacher tokenizes the text
itself; its logits are computed once (cached in --workdir), and its agreement
with the training labels is reported (`glue.teacher_check`: a teacher of
another task is refused, LABEL_k outputs are ordered by the data).
Errors are one line on stderr, exit code 2.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import flags

from jaxdistil import cli
from jaxdistil.glue.run import evaluate, write_outputs
from jaxdistil.glue.tasks import GlueError

PROG = 'python -m jaxdistil.glue'
# absl's own spelling of a false boolean; the old ones work for a release.
DEPRECATED = {'--no_progress': '--noprogress',
              '--no_length_buckets': '--nolength_buckets'}


def define_flags(fv: flags.FlagValues) -> None:
  """The command's flags. Over 60 lines for a reason: one definition a
  flag, in the order --help lists them; splitting it would only scatter them."""
  d = dict(flag_values=fv)
  flags.DEFINE_string('model', None, 'checkpoint or Hugging Face directory '
                      '(jaxdistil.convert)', **d)
  flags.DEFINE_string('task', 'all', 'TASK, TASK1,TASK2, all, or tfds:glue/<config>', **d)
  flags.DEFINE_string('tokenizer', None, "tokenizer folder or hub id (default: "
                      "the model's own)", **d)
  flags.DEFINE_string('data_dir', None, 'glue_data folder (or TFDS data_dir with '
                      '--source=tfds)', **d)
  flags.DEFINE_enum('source', 'tsv', ['tsv', 'tfds'], 'where the tasks are read', **d)
  flags.DEFINE_integer('seeds', 1, 'runs per task (median)', lower_bound=1, **d)
  flags.DEFINE_integer('seed', 0, 'first seed', **d)
  flags.DEFINE_float('epochs', None, 'fine-tuning epochs (default: 3, or the '
                     "distillation default with --teacher; glue.defaults)", **d)
  flags.DEFINE_float('lr', None, 'peak learning rate (default: by the '
                     "model's width, 2e-5 from BERT-base's 768 up, higher "
                     'below; glue.defaults)', **d)
  flags.DEFINE_integer('batch_size', 32, 'examples a step', lower_bound=1, **d)
  flags.DEFINE_integer('max_len', 128, 'longest example, in tokens', lower_bound=8, **d)
  flags.DEFINE_integer('max_steps', None, 'cap on steps per run', **d)
  flags.DEFINE_integer('max_train_examples', None, 'random subset of each train '
                       'split (smoke runs)', **d)
  flags.DEFINE_bool('length_buckets', True, 'pad each example to the smallest of '
                    '8, 12, 16, 24, 32, 48, ... that holds it (--nolength_buckets: '
                    'every example to --max_len)', **d)
  flags.DEFINE_string('name', None, 'row name (default: model dir)', **d)
  flags.DEFINE_string('output', None, 'JSON results (+ .md table)', **d)
  flags.DEFINE_bool('progress', True, 'progress bars (--noprogress: none)', **d)
  flags.DEFINE_string('save', None, 'one task: write the fine-tuned model of the '
                      'median seed here, as a Hugging Face '
                      '*ForSequenceClassification folder (must be new or empty)',
                      **d)
  flags.DEFINE_list('student_layers', None, 'fine-tune a smaller model drawn '
                    'from --model: these of its layers (e.g. 0,2,5), in '
                    "DistilBERT's layout, with no general distillation", **d)
  flags.DEFINE_string('teacher', None, 'one task: a classifier fine-tuned on it '
                      '(HF or ours) that the model is distilled from while it '
                      'is fine-tuned', **d)
  flags.DEFINE_float('kd_temperature', None, 'with --teacher: the softmax '
                     'temperature T (default: glue.defaults)', **d)
  flags.DEFINE_float('kd_alpha', None, 'with --teacher: weight of alpha*T^2*KL '
                     'against (1-alpha)*CE on the labels (default: '
                     'glue.defaults)', **d)
  flags.DEFINE_float('kd_beta', 0.5, "with --teacher on a regression: weight "
                     "of the MSE to the teacher's score against the label's", **d)
  flags.DEFINE_bool('kd_online', False, "with --teacher: run the teacher inside "
                    "each step on the student's tokens (same tokenizer) instead "
                    'of caching its logits once', **d)
  flags.DEFINE_integer('kd_intermediate_steps', 0, 'with --teacher and '
                       "--kd_online: first this many steps of TinyBERT's "
                       'stage 1 (hidden states and attention scores matched '
                       'layer by layer)', lower_bound=0, **d)
  flags.DEFINE_float('kd_intermediate_lr', 5e-5, "with --kd_intermediate_steps: "
                     "the stage's own peak learning rate (TinyBERT's 5e-5)", **d)
  flags.DEFINE_string('transfer_set', None, 'with --teacher: a folder of '
                      'unlabelled examples (glue.augment) the teacher labels',
                      **d)
  flags.DEFINE_string('workdir', None, 'makes the run resumable: each seed is '
                      'checkpointed there and a rerun of the same command '
                      "continues it; with --teacher, the teacher's logits are "
                      'cached there too', **d)
  flags.DEFINE_integer('checkpoint_every', 200, 'with --workdir: steps between '
                       'checkpoints', lower_bound=0, **d)
  flags.DEFINE_bool('eval_only', False, "score the model's own classifier head "
                    'on the dev split(s), without training', **d)


def main(argv: Sequence[str] | None = None,
         load_model: Callable | None = None) -> int:
  try:
    args = cli.parse(PROG, __doc__, define_flags, argv, deprecated=DEPRECATED)
    cli.require(args, 'model')
    summary = evaluate(args, load_model)
  except (cli.UsageError, GlueError) as e:
    print(f'jaxdistil.glue: {e}', file=sys.stderr)
    return 2
  print(write_outputs(summary, args.output))
  return 0


if __name__ == '__main__':
  sys.exit(main())
