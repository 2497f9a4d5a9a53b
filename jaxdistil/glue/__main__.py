"""Fine-tune and evaluate a checkpoint on GLUE; print the paper's Table 1 row.

    python -m jaxdistil.glue --model=DIR --task=all --data_dir=glue_data \
        [--seeds=5] [--output=results/student.json]
    python -m jaxdistil.glue --model=DIR --task=tfds:glue/sst2 --data_dir=~/tfds

`--task` is one task (CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE, WNLI), a
comma-separated list, `all` (every task whose files are in `--data_dir`), or
`tfds:glue/<config>` to read a built TensorFlow Datasets copy (`--source=tfds`
does the same for names and `all`). `--output` gets the JSON results and, next
to it (`.md`), the markdown table. Each task's JSON has `padding_fraction`
({'train', 'eval'}: padding tokens over all tokens of the batches run, which
length buckets keep low; `--no_length_buckets` pads everything to --max_len).
Errors are one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Sequence

from jaxdistil.glue import data as glue_data
from jaxdistil.glue import metrics as glue_metrics
from jaxdistil.glue import report
from jaxdistil.glue.tasks import GlueError, TASKS, TABLE1_ORDER, get as get_task


def parse_args(argv: Sequence[str] | None):
  p = argparse.ArgumentParser(prog='python -m jaxdistil.glue',
                              description=__doc__.splitlines()[0])
  p.add_argument('--model', required=True,
                 help='checkpoint or Hugging Face directory (jaxdistil.convert)')
  p.add_argument('--task', default='all',
                 help='TASK, TASK1,TASK2, all, or tfds:glue/<config>')
  p.add_argument('--tokenizer', default=None,
                 help='tokenizer folder or hub id (default: the model\'s own)')
  p.add_argument('--data_dir', default=None,
                 help='glue_data folder (or TFDS data_dir with --source=tfds)')
  p.add_argument('--source', choices=('tsv', 'tfds'), default='tsv')
  p.add_argument('--seeds', type=int, default=1, help='runs per task (median)')
  p.add_argument('--seed', type=int, default=0, help='first seed')
  p.add_argument('--epochs', type=float, default=3.0)
  p.add_argument('--lr', type=float, default=2e-5)
  p.add_argument('--batch_size', type=int, default=32)
  p.add_argument('--max_len', type=int, default=128)
  p.add_argument('--max_steps', type=int, default=None)
  p.add_argument('--max_train_examples', type=int, default=None,
                 help='random subset of each train split (smoke runs)')
  p.add_argument('--no_length_buckets', action='store_true',
                 help='pad every example to --max_len (default: to the '
                      'smallest of 8, 12, 16, 24, 32, 48, ... that holds it)')
  p.add_argument('--name', default=None, help='row name (default: model dir)')
  p.add_argument('--output', default=None, help='JSON results (+ .md table)')
  p.add_argument('--no_progress', action='store_true')
  return p.parse_args(argv)


def resolve_tasks(task_arg: str, data_dir: str | None, source: str):
  """(tasks, source) from --task/--source; checks the files before any work."""
  arg = task_arg.strip()
  if arg.startswith(glue_data.TFDS_PREFIX):
    arg, source = arg[len(glue_data.TFDS_PREFIX):], 'tfds'
  if arg.lower() == 'all':
    candidates = [TASKS[n] for n in TABLE1_ORDER]
    if source == 'tfds':
      tasks = glue_data.tfds_tasks_present(data_dir, candidates)
    else:
      if not data_dir or not os.path.isdir(data_dir):
        raise GlueError(f'--data_dir={data_dir!r} is not a folder: give the '
                        f'glue_data folder holding CoLA/, SST-2/, ...')
      tasks = glue_data.tasks_present(data_dir, candidates)
    if not tasks:
      raise GlueError(f'no GLUE task found in {data_dir}: expected folders like '
                      f'{os.path.join(data_dir or ".", "SST-2")}/{{train,dev}}.tsv'
                      if source == 'tsv' else
                      f'no built TFDS glue/* dataset in {data_dir}')
    return tasks, source
  tasks = [get_task(a) for a in arg.split(',') if a.strip()]
  if not tasks:
    raise GlueError('--task is empty: give a task name or all')
  if source == 'tsv':
    if not data_dir:
      raise GlueError('--data_dir is required to read glue_data TSV files')
    for t in tasks:
      glue_data.check_files(t, data_dir)
  return tasks, source


def default_load_model(path: str):
  """`jaxdistil.convert.load_model(path)`, unpacked by `unpack_loaded`."""
  try:
    from jaxdistil.convert import load_model
  except ImportError as e:
    raise GlueError(f'cannot load {path!r}: jaxdistil.convert.load_model is not '
                    f'available ({e})') from None
  try:
    # The MLM head is not used by GLUE: a BertModel checkpoint without one is fine.
    loaded = load_model(path, init_missing_head=True)
  except ValueError as e:   # ConvertError, TokenizerError: one-line messages
    raise GlueError(f'cannot load model {path!r}: '
                    f'{(str(e).splitlines() or [""])[0]}') from None
  return unpack_loaded(loaded)


def unpack_loaded(loaded):
  """(BertConfig, params with the pooler if any, tokenizer or None) from what
  the loader returns: that triple already, or a `convert.Loaded` (config,
  params, pooler, tokenizer_dir)."""
  if isinstance(loaded, tuple):
    return loaded
  params = dict(loaded.params)
  if getattr(loaded, 'pooler', None) is not None:
    params['pooler'] = loaded.pooler
  tok_dir = getattr(loaded, 'tokenizer_dir', None)
  return loaded.config, params, load_tokenizer(tok_dir) if tok_dir else None


def load_tokenizer(name_or_dir: str):
  from jaxdistil.data import tokenizer
  try:
    return tokenizer.load(name_or_dir)
  except ValueError as e:
    raise GlueError(str(e).splitlines()[0]) from None


def run(args, load_model: Callable | None = None) -> dict:
  tasks, source = resolve_tasks(args.task, args.data_dir, args.source)
  from jaxdistil.glue import finetune   # jax and the model: import late
  bert_cfg, params, tokenizer = (load_model or default_load_model)(args.model)
  if args.tokenizer:
    tokenizer = load_tokenizer(args.tokenizer)
  if tokenizer is None:
    raise GlueError(f'{args.model} has no tokenizer files (vocab.txt or '
                    f'tokenizer.json): pass --tokenizer=DIR')
  results = {}
  for task in tasks:
    results[task.name] = finetune.run_task(
        task, args.data_dir, bert_cfg, params, tokenizer, seeds=args.seeds,
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        max_len=args.max_len, max_steps=args.max_steps, seed=args.seed,
        source=source, progress=not args.no_progress,
        max_train_examples=args.max_train_examples,
        length_buckets=not args.no_length_buckets)
    padding = results[task.name]['padding_fraction']
    print(f'{task.name}: {results[task.name]["score"]:.2f} '
          f'{results[task.name]["metrics"]} (padding: {padding["train"]:.0%} '
          f'of train tokens, {padding["eval"]:.0%} of dev)', file=sys.stderr,
          flush=True)
  name = args.name or os.path.basename(os.path.normpath(args.model))
  scores = report.task_scores(results)
  return {'name': name, 'model': args.model, 'source': source,
          'data_dir': args.data_dir, 'seeds': args.seeds,
          'score': glue_metrics.macro_score(scores), 'task_scores': scores,
          'tasks_missing': [t for t in TABLE1_ORDER if scores[t] is None],
          'tasks': results,
          'table1_row': report.table1_row(name, results)}


def write_outputs(summary: dict, output: str | None) -> str:
  """The markdown table; written with the JSON when `output` is given."""
  table = report.table1({summary['name']: summary['tasks']})
  if output:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, 'w') as f:
      json.dump(summary, f, indent=2, default=float)
      f.write('\n')
    with open(os.path.splitext(output)[0] + '.md', 'w') as f:
      f.write(table + '\n')
  return table


def main(argv: Sequence[str] | None = None,
         load_model: Callable | None = None) -> int:
  args = parse_args(argv)
  try:
    summary = run(args, load_model)
  except GlueError as e:
    print(f'jaxdistil.glue: {e}', file=sys.stderr)
    return 2
  print(write_outputs(summary, args.output))
  return 0


if __name__ == '__main__':
  sys.exit(main())
