"""What int8 costs: a fine-tuned classifier's GLUE dev score on three runtimes.

    python -m benchmarks.onnx_accuracy --model=DIR --task=MRPC \\
        --data_dir=../shared/data/glue --work=/tmp/onnx_acc [--output=X.json]

`--model` is a classifier fine-tuned on `--task` (`jaxdistil.glue --save`, or
any HF `*ForSequenceClassification` of that task whose outputs are in the
task's label order). It is exported with `convert export --format=onnx`,
float32 and `--quantize=int8`, under `--work` (reused when present), and the
task's dev set is scored by `predict`'s two classifiers: the XLA forward
(float32), ONNX Runtime float32 and ONNX Runtime int8, each with the same
tokenization (`--max_len`, pairs longest-first) and the task's GLUE metric.
Each line gives the score, its difference from the XLA score, the agreement
of the top label with XLA's, the largest score (probability) difference, and
the wall time of the dev pass (batch `--batch_size`; a rough figure, not a
latency benchmark: see `benchmarks/table3.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np


def export(model: str, out: str, quantize: str | None) -> str:
  from jaxdistil.convert.__main__ import main as convert_main
  if not os.path.isfile(os.path.join(out, 'model.onnx')):
    argv = ['export', '--format=onnx', f'--checkpoint={model}', f'--output={out}']
    if quantize:
      argv.append(f'--quantize={quantize}')
    if convert_main(argv):
      raise SystemExit(f'export of {model} failed')
  return out


def classifiers(args, work: str) -> dict:
  from jaxdistil import predict
  common = dict(tokenizer=None, batch_size=args.batch_size, max_len=args.max_len,
                dtype='float32', threads=args.threads)
  make = lambda model, runtime: predict.load(argparse.Namespace(
      model=model, runtime=runtime, **common))
  return {
      'xla': make(args.model, 'xla'),
      'onnxruntime_float32': make(export(args.model, os.path.join(
          work, 'float32'), None), 'onnxruntime'),
      'onnxruntime_int8': make(export(args.model, os.path.join(
          work, 'int8'), 'int8'), 'onnxruntime'),
  }


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--model', required=True)
  p.add_argument('--task', required=True)
  p.add_argument('--data_dir', required=True)
  p.add_argument('--work', required=True, help='where the ONNX folders go')
  p.add_argument('--max_len', type=int, default=128)
  p.add_argument('--batch_size', type=int, default=32)
  p.add_argument('--threads', type=int, default=0)
  p.add_argument('--output', help='JSON report')
  args = p.parse_args(argv)
  from jaxdistil import predict_io as io
  from jaxdistil.glue import data, metrics, tasks
  task = tasks.get(args.task)
  dev = data.read_split(task, task.dev[0].name, args.data_dir)
  records = [io.Record(i + 1, a, None if dev.text_b is None else dev.text_b[i])
             for i, a in enumerate(dev.text_a)]
  work = os.path.join(args.work, task.name)
  runs, reference = {}, None
  for name, classifier in classifiers(args, work).items():
    t = time.perf_counter()
    scores = classifier.scores(records)
    seconds = time.perf_counter() - t
    preds = scores[:, 0] if task.is_regression else scores.argmax(-1)
    values = metrics.compute(task.metrics, preds, dev.labels)
    run = {'score': metrics.task_score(values), 'metrics': values,
           'dev_seconds': seconds}
    if reference is None:
      reference = (scores, preds, run['score'])
    else:
      run['minus_xla'] = run['score'] - reference[2]
      run['top_label_agreement'] = float(np.mean(preds == reference[1]))
      run['max_score_difference'] = float(np.abs(scores - reference[0]).max())
    runs[name] = run
    print(f'{task.name} {name:20s} {run["score"]:7.2f}'
          + (f'  {run["minus_xla"]:+.2f} vs XLA, top label agrees on '
             f'{100 * run["top_label_agreement"]:.1f}%, largest score '
             f'difference {run["max_score_difference"]:.2e}'
             if 'minus_xla' in run else '')
          + f'  ({seconds:.1f} s for {len(records)} rows)', flush=True)
  report = {'task': task.name, 'model': os.path.abspath(args.model),
            'dev_rows': len(records), 'max_len': args.max_len, 'runs': runs,
            'machine': platform.processor() or platform.machine()}
  if args.output:
    with open(args.output, 'w') as f:
      json.dump(report, f, indent=1)
      f.write('\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
