"""`python -m jaxdistil.quickstart --workdir=DIR`: a real distillation, offline.

Everything it needs ships inside the package (`quickstart_data/`): six
public-domain novels (see SOURCES.md) and a small teacher pre-trained on them
(`teacher/`, a 4-layer, 128-wide BERT with a 4,096-piece WordPiece vocabulary,
in the Hugging Face format). On a laptop CPU it runs in a minute or two:

  1. data     `prepare` with the teacher's tokenizer: sequences of up to 64
              tokens in DIR/data; the last shard (the end of the last book) is
              held out for evaluation
  2. student  a 2-layer student copied from teacher layers (0, 3), trained with
              DistilBERT's triple loss, DIR/student: checkpoints, TensorBoard
              logs, metrics.jsonl and hf/ (a DistilBertForMaskedLM)

then prints the held-out masked-LM accuracy of teacher and student, measured on
the same masked batches. Rerunning resumes; finished stages are skipped.

`--train_teacher` first makes the teacher itself, as the shipped one was made:
a WordPiece vocabulary learned from the text (`tokenizers`), then teacher-free
masked-LM pre-training from random weights (configs/quickstart.py:teacher) in
DIR/teacher, which the student stage then uses. The shipped teacher came from

    python -m jaxdistil.quickstart --train_teacher --teacher_steps=3000 \
        --workdir=runs/make_teacher --save_teacher=jaxdistil/quickstart_data/teacher
"""

from __future__ import annotations

from jaxdistil import host_memory

if __name__ == '__main__':
  host_memory.keep_freed_memory()     # before jax starts its threads

import glob
import json
import os
import sys
import time

from jaxdistil import workdir as layout

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'quickstart_data')
CONFIG = 'quickstart.py'                # a shipped config (config_lib.shipped)


def load_config(stage: str):
  """configs/quickstart.py (from the checkout) for `stage`."""
  from jaxdistil import config_lib
  module = config_lib.load_module(config_lib.shipped(CONFIG))
  return module.get_config(stage), module.VOCAB_SIZE


def make_vocab(files: list[str], directory: str, size: int) -> str:
  """An uncased WordPiece vocab learned from `files` (kept if already there)."""
  path = os.path.join(directory, 'vocab.txt')
  if os.path.isfile(path):
    return directory
  from tokenizers.implementations import BertWordPieceTokenizer
  from jaxdistil.data import sources
  tok = BertWordPieceTokenizer(lowercase=True)
  tok.train_from_iterator(sources.read_documents(files), vocab_size=size,
                          min_frequency=2, show_progress=False)
  os.makedirs(directory, exist_ok=True)
  tok.save_model(directory)
  return directory


TEACHER = os.path.join(DATA, 'teacher')


def run(workdir: str, text: str | None = None, train_teacher: bool = False,
        teacher_steps: int | None = None, student_steps: int | None = None,
        save_teacher: str | None = None) -> dict:
  import jax
  from jaxdistil import config_lib, convert, train
  from jaxdistil.data import corpus
  from jaxdistil.models import bert

  files = sorted(glob.glob(text or os.path.join(DATA, '*.txt.gz')))
  if not files:
    raise ValueError(f'no text matches {text or DATA!r}')
  times = {}
  t = time.perf_counter()
  teacher_cfg, vocab_size = load_config('teacher')
  if train_teacher:
    vocab = make_vocab(files, os.path.join(workdir, 'vocab'), vocab_size)
  else:
    vocab = TEACHER
    if not os.path.isfile(os.path.join(TEACHER, 'model.safetensors')):
      raise ValueError(f'the shipped teacher is missing from {TEACHER}: reinstall, '
                       f'or make one with --train_teacher')
  with open(os.path.join(vocab, 'vocab.txt'), encoding='utf-8') as f:
    vocab_size = sum(1 for _ in f)
  data = os.path.join(workdir, 'data')
  meta = corpus.prepare(files, tokenizer=vocab, max_len=teacher_cfg.max_len,
                         output=data, shard_size=2000, fmt='gutenberg',
                         max_positions=teacher_cfg.model.teacher.max_position_embeddings,
                         teacher_vocab_size=vocab_size)
  times['data_s'] = time.perf_counter() - t

  stages = (('teacher', teacher_steps), ('student', student_steps))
  results = {}
  teacher = TEACHER
  for stage, steps in stages if train_teacher else stages[1:]:
    t = time.perf_counter()
    config, _ = load_config(stage)
    config.data = data
    config.model.teacher.vocab_size = vocab_size
    if steps:
      config.total_steps = steps
      config.checkpoint_every = max(1, steps // 2)
      config.eval_every = max(1, steps // 2)
    if stage == 'student':
      config.teacher = teacher
    print(f'jaxdistil.quickstart: {stage}: {config.total_steps} steps of '
          f'{config.batch_size} x {config.max_len} tokens'
          + (f', teacher {teacher}' if stage == 'student' else ''), file=sys.stderr)
    out = train.train(config, os.path.join(workdir, stage))
    times[f'{stage}_s'] = time.perf_counter() - t
    evals = {k: v for k, v in out['metrics'].items() if k.startswith('eval/')}
    if not evals:      # finished before: the last logged evaluation
      evals = _last_eval(os.path.join(workdir, stage))
    results[stage] = dict(evals, step=out['step'],
                          hf=layout.path(workdir, stage, layout.HF),
                          layers=config.model.student.num_layers,
                          params=bert.param_count(out['state'].params))
    if stage == 'teacher':
      teacher = os.path.join(workdir, 'teacher')
      if save_teacher:
        m = convert.load_model(teacher)
        convert.export(m.config, jax.device_get(m.params), save_teacher,
                       tokenizer_dir=m.tokenizer_dir)
    else:
      tcfg = config_lib.teacher_config(out['config'])
      results['teacher_model'] = {
          'source': teacher, 'layers': tcfg.num_layers,
          'params': bert.param_count(jax.eval_shape(
              lambda: bert.init(tcfg, jax.random.key(0))))}

  summary = {
      'corpus': {'files': [os.path.basename(f) for f in files],
                 'sequences': meta['num_sequences'], 'tokens': meta['num_tokens'],
                 'vocab_size': vocab_size},
      'teacher': results['teacher_model'], 'student': results['student'],
      'held_out_mlm_accuracy': {
          'teacher': results['student'].get('eval/teacher_mlm_accuracy'),
          'student': results['student'].get('eval/mlm_accuracy')},
      'seconds': times}
  if 'teacher' in results:
    summary['teacher_training'] = results['teacher']
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  return summary


def _last_eval(workdir: str) -> dict:
  last = {}
  path = os.path.join(workdir, layout.METRICS)
  if os.path.isfile(path):
    with open(path) as f:
      for line in f:
        row = json.loads(line)
        if any(k.startswith('eval/') for k in row):
          last = {k: v for k, v in row.items() if k.startswith('eval/')}
  return last


def report(summary: dict) -> str:
  acc = summary['held_out_mlm_accuracy']
  t, s = summary['teacher'], summary['student']
  secs = summary['seconds']
  fmt = lambda x: '-' if x is None else f'{x:.3f}'
  lines = [
      f'held-out masked-LM accuracy (same masked batches; corpus '
      f'{summary["corpus"]["tokens"]:,} tokens, vocabulary '
      f'{summary["corpus"]["vocab_size"]:,}):',
      f'  teacher  {t["layers"]} layers  {t["params"]:>9,} params  {fmt(acc["teacher"])}'
      f'   ({t["source"]})',
      f'  student  {s["layers"]} layers  {s["params"]:>9,} params  {fmt(acc["student"])}'
      f'   (distilled, {s["step"]} steps)',
      'time: ' + ', '.join(f'{k[:-2]} {v:.0f} s' for k, v in secs.items()),
      f'student for transformers: {s["hf"]}',
  ]
  return '\n'.join(lines)


def define_flags(fv) -> None:
  from absl import flags
  d = dict(flag_values=fv)
  flags.DEFINE_string('workdir', 'runs/quickstart', 'everything goes here', **d)
  flags.DEFINE_string('text', None, 'glob of text files (default: the shipped '
                      'novels)', **d)
  flags.DEFINE_bool('train_teacher', False, 'pre-train the teacher first instead '
                    'of using the shipped one', **d)
  flags.DEFINE_string('save_teacher', None, 'with --train_teacher: also write it '
                      'as an HF directory here', **d)
  flags.DEFINE_integer('teacher_steps', None, "the teacher stage's total_steps "
                       "(configs/quickstart.py:teacher)", lower_bound=1, **d)
  flags.DEFINE_integer('student_steps', None, "the student stage's total_steps "
                       "(configs/quickstart.py:student)", lower_bound=1, **d)


def main(argv=None):
  from jaxdistil import cli
  from jaxdistil.config_lib import ConfigError
  from jaxdistil.convert import ConvertError
  from jaxdistil.data.corpus import PrepareError
  from jaxdistil.train import TrainError
  try:
    args = cli.parse('python -m jaxdistil.quickstart', __doc__, define_flags, argv)
    if args.save_teacher and not args.train_teacher:
      raise cli.UsageError('--save_teacher goes with --train_teacher')
    summary = run(args.workdir, args.text, args.train_teacher, args.teacher_steps,
                  args.student_steps, args.save_teacher)
  except (cli.UsageError, ConfigError, ConvertError, PrepareError, TrainError,
          ValueError, OSError) as e:
    print(f'jaxdistil.quickstart: {e}', file=sys.stderr)
    sys.exit(2)
  print(report(summary))


if __name__ == '__main__':
  main()
