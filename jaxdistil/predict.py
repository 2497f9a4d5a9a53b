"""Label texts with a sequence classifier, as `pipeline('text-classification')`.

    python -m jaxdistil.predict --model=DIR --input=texts.jsonl \\
        --output=predictions.jsonl [--batch_size=32] [--all_scores]
    python -m jaxdistil.predict --model=DIR --input=glue_data/MRPC/dev.tsv \\
        --task=MRPC --output=mrpc.jsonl

`--model` is a classifier: a Hugging Face `*ForSequenceClassification` folder
or one saved by `python -m jaxdistil.glue --save`. The input is JSONL
(`{"text": ..., "text_pair": ...}` a line), plain text (one text a line) or,
with `--task`, a GLUE TSV (the task's text columns); see `predict_io`. Each
input gives one JSON line of the output, in order: `{"label", "score"}` of
the top label (the softmax probability; for a regression model the raw
score), or with `--all_scores` a list of every label's, highest first, as
`pipeline(..., top_k=None)` gives it.

Texts are tokenized with the model's tokenizer (or `--tokenizer`) and cut at
`--max_len` tokens (capped by the model's positions), pairs longest-first, as
the pipeline does with `truncation=True`; its scores equal the pipeline's when
`--max_len` is the tokenizer's `model_max_length` or no text is cut.

`--runtime=onnxruntime` runs a folder that `python -m jaxdistil.convert
export --format=onnx` wrote (float32 or int8; `pip install 'jaxdistil[onnx]'`)
with the same inputs and outputs; in float32 its scores equal the XLA path's
(the test holds them to 1e-4). Its batches are padded to their longest row.

The input is streamed: `--chunk_size` records are read, predicted and written
at a time. Within a chunk, consecutive records make batches, each padded to
its length bucket (`inference.serving_buckets`: the next multiple of 8
tokens), and every bucket is compiled once for the whole run, on first use. A batch is split over all local devices (a 1-D mesh; every TPU chip
of a host), so `--batch_size` is rounded up to a multiple of their count and
a short batch is padded. The output file appears only when complete; one that
exists is kept unless `--overwrite`. Bad input (a malformed line, a missing
field, a model without a classifier head) is one line on stderr naming the
line, and exit status 2.
"""

from __future__ import annotations

import sys
import time
from typing import Sequence

import numpy as np
from absl import flags

from jaxdistil import cli
from jaxdistil import predict_io as io

PROG = 'python -m jaxdistil.predict'


def define_flags(fv: flags.FlagValues) -> None:
  d = dict(flag_values=fv)
  flags.DEFINE_string('model', None, 'classifier folder (Hugging Face '
                      '*ForSequenceClassification, or glue --save)', **d)
  flags.DEFINE_string('input', None, 'JSONL, plain text or (with --task) a '
                      'GLUE TSV', **d)
  flags.DEFINE_string('output', None, 'JSONL predictions, one line an input',
                      **d)
  flags.DEFINE_string('task', None, 'read --input as this GLUE task\'s TSV '
                      '(its text columns)', **d)
  flags.DEFINE_enum('format', 'auto', list(io.FORMATS), 'input format (auto: '
                    'tsv with --task, jsonl for .jsonl/.ndjson/.json, else '
                    'text)', **d)
  flags.DEFINE_string('tokenizer', None, "tokenizer folder or hub id "
                      "(default: the model's own)", **d)
  flags.DEFINE_integer('batch_size', 32, 'examples a batch (rounded up to a '
                       'multiple of the local devices)', lower_bound=1, **d)
  flags.DEFINE_integer('max_len', 128, 'tokens an example, [CLS] and [SEP] '
                       'included (capped by the model\'s positions)',
                       lower_bound=4, **d)
  flags.DEFINE_integer('chunk_size', 4096, 'records read, predicted and '
                       'written at a time', lower_bound=1, **d)
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'compute '
                    'dtype of the encoder', **d)
  flags.DEFINE_enum('runtime', 'xla', ['xla', 'onnxruntime'], 'xla: our '
                    'forward, jitted; onnxruntime: a folder written by '
                    '`convert export --format=onnx`', **d)
  flags.DEFINE_integer('threads', 0, '--runtime=onnxruntime: intra-op threads '
                       '(0: ONNX Runtime\'s default, every core)', lower_bound=0,
                       **d)
  flags.DEFINE_bool('all_scores', False, 'every label\'s score, highest first '
                    '(pipeline top_k=None)', **d)
  flags.DEFINE_bool('overwrite', False, 'replace --output if it exists', **d)
  flags.DEFINE_bool('no_progress', False, 'no progress bar', **d)


class Classifier:
  """A classifier and its tokenizer on the local devices: `scores(records)`
  gives pipeline-style scores, compiling each length bucket once."""

  def __init__(self, loaded, tokenizer, batch_size: int, max_len: int,
               dtype: str = 'float32'):
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from jaxdistil import inference
    from jaxdistil.convert.classifier import num_outputs
    from jaxdistil.models import bert
    cfg = loaded.config
    self.tokenizer = tokenizer
    self.style = 'roberta' if cfg.family in bert.ROBERTA_FAMILIES else 'bert'
    self.max_len = min(max_len, cfg.max_position_embeddings - cfg.position_offset)
    devices = jax.local_devices()
    self.mesh = Mesh(np.asarray(devices), ('data',))
    self.batch_size = -(-batch_size // len(devices)) * len(devices)
    self.batch_sharding = NamedSharding(self.mesh, P('data'))
    self.cfg, params, head = inference.prepare(cfg, loaded.params, loaded.head,
                                               dtype)
    self.params, self.head = jax.device_put(
        (params, head), NamedSharding(self.mesh, P()))
    self.buckets = inference.serving_buckets(self.max_len)
    self.compiled: dict = {}
    info = loaded.classifier
    self.labels = (list(info.labels) if info is not None else
                   [f'LABEL_{i}' for i in range(num_outputs(head))])
    self.regression = bool(info is not None and info.is_regression)

  def encode(self, records: Sequence[io.Record]) -> dict:
    return io.encode(records, self.tokenizer, self.max_len, self.style)

  def _compiled(self, length: int, arrays: dict):
    """The forward at padded `length`, compiled on first use."""
    if length not in self.compiled:
      from jaxdistil import inference
      fns, _ = inference.compile_buckets(self.cfg, self.params, self.head,
                                         arrays, self.batch_size, [length],
                                         self.batch_sharding)
      self.compiled[length] = fns[length]
    return self.compiled[length]

  def logits(self, arrays: dict, progress=None) -> np.ndarray:
    """[N, outputs] float32 logits, in order; batches are dispatched before
    any result is read, so the host prepares the next while devices run.
    `progress(n)` is called as each batch's n results arrive."""
    import jax
    from jaxdistil import inference
    lengths = arrays['attention_mask'].sum(axis=1)
    pending = []
    for b in inference.plan(lengths, self.batch_size, self.buckets):
      host = inference.host_batch(arrays, b, self.batch_size)
      batch = jax.device_put(host, self.batch_sharding)
      pending.append((self._compiled(b.length, arrays)(self.params, self.head, batch),
                      len(b.index)))
    outs = []
    for out, n in pending:
      outs.append(np.asarray(out, np.float32)[:n])
      if progress is not None:
        progress(n)
    return np.concatenate(outs)

  def scores(self, records: Sequence[io.Record], progress=None) -> np.ndarray:
    """[N, outputs]: softmax probabilities, or a regression's raw scores."""
    return io.probabilities(self.logits(self.encode(records), progress),
                         self.regression)

  def where(self) -> str:
    return (f'{self.mesh.size} device(s), batch {self.batch_size}, '
            f'{len(self.compiled)} length bucket(s) compiled')


def load(args):
  """The classifier of --model with its tokenizer, on --runtime; GlueError
  (one line) when it cannot serve."""
  import os
  from jaxdistil.glue import run as glue_run
  from jaxdistil.glue.tasks import GlueError
  from jaxdistil.predict_onnx import MODEL, OnnxClassifier
  onnx_folder = os.path.isfile(os.path.join(args.model, MODEL))
  if args.runtime == 'onnxruntime':
    if args.dtype != 'float32':
      raise GlueError(f'--runtime=onnxruntime runs the exported model as it is '
                      f'(float32 or int8): drop --dtype={args.dtype}')
    return OnnxClassifier(args.model, args.tokenizer, args.batch_size,
                          args.max_len, args.threads)
  if onnx_folder and not os.path.isfile(
      os.path.join(args.model, 'model.safetensors')):
    raise GlueError(f'{args.model} is an ONNX model: pass --runtime=onnxruntime')
  loaded, tokenizer = glue_run.load(args.model, args.tokenizer)
  if loaded.head is None:
    raise GlueError(f'{args.model} has no classifier head: predict needs a '
                    f'*ForSequenceClassification folder or a model saved by '
                    f'`jaxdistil.glue --save`')
  return Classifier(loaded, tokenizer, args.batch_size, args.max_len,
                    args.dtype)


def run(args) -> dict:
  """Predict --input into --output; a summary {'examples', 'seconds', ...}."""
  from tqdm.auto import tqdm
  from jaxdistil.glue import tasks
  task = tasks.get(args.task) if args.task else None
  fmt = io.resolve_format(args.format, args.input, task)
  stream = io.records(args.input, fmt, task)
  output = io.Output(args.output, args.overwrite)
  try:
    classifier = load(args)
    start, count = time.perf_counter(), 0
    with tqdm(desc='predict', unit=' ex', disable=args.no_progress,
              file=sys.stderr, smoothing=0.1) as bar:
      for chunk in io.chunks(stream, args.chunk_size):
        scores = classifier.scores(chunk, bar.update)
        output.write(io.result_rows(scores, classifier.labels, args.all_scores))
        count += len(chunk)
    output.commit()
  finally:
    output.discard()
  seconds = time.perf_counter() - start
  return {'examples': count, 'seconds': seconds, 'format': fmt,
          'runtime': args.runtime, 'where': classifier.where(),
          'batch_size': classifier.batch_size,
          'devices': getattr(classifier, 'mesh', None) and classifier.mesh.size,
          'buckets_compiled': sorted(getattr(classifier, 'compiled', ()))}


def main(argv: Sequence[str] | None = None) -> int:
  from jaxdistil.glue.tasks import GlueError
  try:
    args = cli.parse(PROG, __doc__, define_flags, argv)
    cli.require(args, 'model', 'input', 'output')
    summary = run(args)
  except (cli.UsageError, GlueError, io.InputError) as e:
    print(f'jaxdistil.predict: {(str(e).splitlines() or [""])[0]}',
          file=sys.stderr)
    return 2
  print(f"{summary['examples']} predictions in {args.output} "
        f"({summary['examples'] / max(summary['seconds'], 1e-9):.1f} examples/s, "
        f"{summary['runtime']} on {summary['where']})")
  return 0


if __name__ == '__main__':
  sys.exit(main())
