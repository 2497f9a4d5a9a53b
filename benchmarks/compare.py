"""jaxdistil's step against the same step in PyTorch + transformers, one command.

    python -m benchmarks.compare --config=configs/distilbert_base.py \
        --config.max_len=128 --config.batch_size=32 --config.micro_batches=4 \
        [--data=DIR [--unpacked] [--data_sequences N]] \
        [--steps N] [--warmup N] [--json] [--torch_keep_freed_memory] \
        [--matmul_size N] [--timeout S]

Runs `python -m jaxdistil.bench <config flags> --steps N --json`, then
`python -m benchmarks.torch_distil <config flags> --steps N --json`, one after the
other in their own processes (so neither shares the cores with the other), and
prints tokens/s, step time and MFU of each with the ratio jaxdistil / PyTorch.

Every `--config...` flag goes to both unchanged, so both build the same sizes and
the same batch. `--warmup` is the PyTorch side's untimed steps (ours always runs
one warm-up step after compiling). Each side's MFU is against the matmul rate it
measured itself (`jnp.dot` / `torch.mm`, 2048^3 float32, best of 8); the table
also gives both against the higher of the two rates, so that a faster matmul
library on one side counts as speed, not as a lower bar.

Real text, `--data=DIR` (a prepared directory): jaxdistil runs
`python -m jaxdistil.bench <config flags> --data=DIR --config.packing=True
--json` (and, with `--unpacked`, once more with `--config.packing=False`); the
PyTorch side runs `benchmarks.torch_distil <config flags> --data=DIR --json`,
the reference DistilBERT batching (grouped by size, each batch padded to its
longest row). The table compares **real (non-padding) tokens/s**, the work both
sides do whatever their padding, with the ratio jaxdistil / PyTorch, and the
padding fraction of each. A jaxdistil JSON without `real_tokens_per_s` stops
the comparison with one line, before the PyTorch side runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(name: str, cmd: list[str], timeout: float | None) -> dict:
  print(f'[compare] {name}: {" ".join(cmd)}', file=sys.stderr, flush=True)
  t = time.perf_counter()
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
  wall = time.perf_counter() - t
  if out.returncode != 0:
    sys.stderr.write(out.stderr[-4000:])
    last = next((line.strip() for line in reversed(out.stderr.splitlines())
                 if line.strip() and not line.startswith('Pass --help')), '')
    raise SystemExit(f'[compare] {name} failed with exit status {out.returncode}'
                     + (f': {last}' if last else ''))
  lines = out.stdout.strip().splitlines()
  try:
    result = json.loads(lines[-1])
  except (IndexError, json.JSONDecodeError):
    sys.stderr.write(out.stdout[-4000:] + out.stderr[-4000:])
    raise SystemExit(f'[compare] {name} printed no JSON line') from None
  result['wall_s'] = wall
  print(f'[compare] {name}: done in {wall:.1f} s', file=sys.stderr, flush=True)
  return result


def _side_args(config_args, steps, warmup, torch_keep_freed_memory, matmul_size):
  """(flags for both sides, extra flags for the PyTorch side)."""
  common = list(config_args) + ['--json']
  if steps is not None:
    common.append(f'--steps={steps}')
  if matmul_size is not None:
    common.append(f'--matmul_size={matmul_size}')
  torch_extra = []
  if warmup is not None:
    torch_extra.append(f'--warmup={warmup}')
  if torch_keep_freed_memory:
    torch_extra.append('--keep_freed_memory')
  return common, torch_extra


def compare(config_args: list[str], steps: int | None = None,
            warmup: int | None = None, torch_keep_freed_memory: bool = False,
            timeout: float | None = None, matmul_size: int | None = None) -> dict:
  common, torch_extra = _side_args(config_args, steps, warmup,
                                   torch_keep_freed_memory, matmul_size)
  ours = _run('jaxdistil', [sys.executable, '-m', 'jaxdistil.bench'] + common,
              timeout)
  theirs = _run('pytorch', [sys.executable, '-m', 'benchmarks.torch_distil']
                + common + torch_extra, timeout)
  best_rate = max(ours['matmul_flops_per_s'], theirs['matmul_flops_per_s'])
  for r in (ours, theirs):
    r['mfu_vs_best_matmul'] = r['tokens_per_s'] * r['flops_per_token'] / best_rate
  ratio = lambda key: ours[key] / theirs[key]
  return {
      'jaxdistil': ours, 'pytorch': theirs,
      'same_flops_per_token': ours['flops_per_token'] == theirs['flops_per_token'],
      'ratio': {  # jaxdistil / PyTorch
          'tokens_per_s': ratio('tokens_per_s'),
          'step_s': ratio('step_s'),
          'mfu': ratio('mfu'),
          'mfu_vs_best_matmul': ratio('mfu_vs_best_matmul'),
          'matmul_flops_per_s': ratio('matmul_flops_per_s'),
          'peak_host_rss_bytes': ratio('peak_host_rss_bytes'),
      },
  }


def table(c: dict) -> str:
  ours, theirs, ratio = c['jaxdistil'], c['pytorch'], c['ratio']
  gib = 2 ** 30
  rows = [
      ('tokens/s', 'tokens_per_s', lambda v: f'{v:.1f}'),
      ('step (median)', 'step_s', lambda v: f'{v:.3f} s'),
      ('MFU (own matmul rate)', 'mfu', lambda v: f'{v:.3f}'),
      ('MFU (higher matmul rate)', 'mfu_vs_best_matmul', lambda v: f'{v:.3f}'),
      ('matmul rate', 'matmul_flops_per_s', lambda v: f'{v / 1e9:.1f} GFLOP/s'),
      ('peak host RSS', 'peak_host_rss_bytes', lambda v: f'{v / gib:.2f} GiB'),
  ]
  header = f"{'':26s} {'jaxdistil':>16s} {'PyTorch':>16s} {'jaxdistil/PyTorch':>18s}"
  lines = [
      f"shape: batch {ours['batch_size']} x length {ours['max_len']}, "
      f"{ours['micro_batches']} micro-batch(es); teacher {ours['teacher_layers']} "
      f"layers, student {ours['student_layers']}; {ours['dtype']}; "
      f"{ours['flops_per_token'] / 1e6:.1f} MFLOP/token"
      + ('' if c['same_flops_per_token'] else
         f" (PyTorch side: {theirs['flops_per_token'] / 1e6:.1f}!)"),
      f"PyTorch {theirs['torch_version']}, transformers "
      f"{theirs['transformers_version']}, {theirs['threads']} threads, attention "
      f"{theirs['attn_implementation']}; jax on {ours['devices']} x "
      f"{ours['device_kind']}",
      header, '-' * len(header)]
  for label, key, fmt in rows:
    lines.append(f'{label:26s} {fmt(ours[key]):>16s} {fmt(theirs[key]):>16s} '
                 f'{ratio[key]:>18.3f}')
  speed = ratio['tokens_per_s']
  lines.append(f'jaxdistil is {speed:.2f}x the tokens/s of PyTorch + transformers '
               f'on the same work.')
  return '\n'.join(lines)



# --------------------------------------------------------------------------
# Real text (--data): real tokens/s of each side.

REAL_KEY = 'real_tokens_per_s'


def _mfu_vs(r: dict, rate: float):
  """r's MFU against `rate` instead of its own matmul rate."""
  if r.get('mfu') is None or not r.get('matmul_flops_per_s'):
    return None
  return r['mfu'] * r['matmul_flops_per_s'] / rate


def compare_real(config_args: list[str], data: str, unpacked: bool = False,
                 steps: int | None = None, warmup: int | None = None,
                 torch_keep_freed_memory: bool = False,
                 timeout: float | None = None, matmul_size: int | None = None,
                 data_sequences: int | None = None) -> dict:
  common, torch_extra = _side_args(config_args, steps, warmup,
                                   torch_keep_freed_memory, matmul_size)
  common.insert(len(config_args), f'--data={data}')
  if data_sequences is not None:
    torch_extra.append(f'--data_sequences={data_sequences}')
  runs = {}
  for name, packing in [('packed', True)] + ([('unpacked', False)] if unpacked
                                             else []):
    label = f'jaxdistil ({name})'
    r = _run(label, [sys.executable, '-m', 'jaxdistil.bench'] + common
             + [f'--config.packing={packing}'], timeout)
    if REAL_KEY not in r:
      raise SystemExit(f'[compare] {label}: jaxdistil.bench --data printed no '
                       f'{REAL_KEY} in its JSON (its real-data mode is not there '
                       f'yet?): nothing to compare')
    runs[name] = r
  theirs = _run('pytorch', [sys.executable, '-m', 'benchmarks.torch_distil']
                + common + torch_extra, timeout)
  rates = [r['matmul_flops_per_s'] for r in [*runs.values(), theirs]
           if r.get('matmul_flops_per_s')]
  best_rate = max(rates) if rates else None
  for r in [*runs.values(), theirs]:
    r['mfu_vs_best_matmul'] = _mfu_vs(r, best_rate) if best_rate else None
  ratio = {}
  for name, ours in runs.items():
    q = lambda key: (ours[key] / theirs[key]
                     if ours.get(key) is not None and theirs.get(key) else None)
    ratio[name] = {k: q(k) for k in (REAL_KEY, 'step_s', 'mfu',
                                     'mfu_vs_best_matmul', 'matmul_flops_per_s',
                                     'peak_host_rss_bytes')}
  return {'data': data, 'jaxdistil': runs, 'pytorch': theirs, 'ratio': ratio}


def table_real(c: dict) -> str:
  runs, theirs, ratio = c['jaxdistil'], c['pytorch'], c['ratio']
  gib = 2 ** 30
  num = lambda fmt: (lambda v: '-' if v is None else fmt(v))
  rows = [
      ('real tokens/s', REAL_KEY, num(lambda v: f'{v:.1f}')),
      ('padding fraction', 'padding_fraction', num(lambda v: f'{v:.3f}')),
      ('step (median)', 'step_s', num(lambda v: f'{v:.3f} s')),
      ('MFU (own matmul rate)', 'mfu', num(lambda v: f'{v:.3f}')),
      ('MFU (higher matmul rate)', 'mfu_vs_best_matmul', num(lambda v: f'{v:.3f}')),
      ('matmul rate', 'matmul_flops_per_s', num(lambda v: f'{v / 1e9:.1f} GFLOP/s')),
      ('peak host RSS', 'peak_host_rss_bytes', num(lambda v: f'{v / gib:.2f} GiB')),
  ]
  cols = [(f'jax {n}', r) for n, r in runs.items()] + [('PyTorch', theirs)]
  rcols = [(f'{n}/PyTorch', ratio[n]) for n in runs]
  header = (f"{'':26s} " + ' '.join(f'{n:>16s}' for n, _ in cols) + ' '
            + ' '.join(f'{n:>18s}' for n, _ in rcols))
  any_jax = next(iter(runs.values()))
  lines = [
      f"data: {c['data']}; batch {theirs['batch_size']} (max length "
      f"{theirs['max_len']}), {theirs['micro_batches']} micro-batch(es); "
      f"teacher {theirs['teacher_layers']} layers, student "
      f"{theirs['student_layers']}; {theirs['dtype']}",
      f"PyTorch {theirs['torch_version']}, transformers "
      f"{theirs['transformers_version']}, {theirs['threads']} threads, attention "
      f"{theirs['attn_implementation']}, batches grouped by size and padded to "
      f"their longest row; jax on {any_jax.get('devices', '?')} x "
      f"{any_jax.get('device_kind', '?')}, packed"
      + (' and unpacked' if 'unpacked' in runs else ''),
      header, '-' * len(header)]
  for label, key, fmt in rows:
    lines.append(f'{label:26s} ' + ' '.join(f'{fmt(r.get(key)):>16s}'
                                             for _, r in cols)
                 + ' ' + ' '.join(f"{num(lambda v: f'{v:.3f}')(q.get(key)):>18s}"
                                  for _, q in rcols))
  for name in runs:
    lines.append(f'jaxdistil ({name}) is {ratio[name][REAL_KEY]:.2f}x the real '
                 f'tokens/s of PyTorch + transformers on the same text.')
  return '\n'.join(lines)


def parse(argv: list[str]):
  p = argparse.ArgumentParser(
      prog='python -m benchmarks.compare', allow_abbrev=False,
      description='jaxdistil.bench against benchmarks.torch_distil, same flags. '
                  'Every --config... flag is passed to both.')
  p.add_argument('--steps', type=int, default=None,
                 help='timed steps for both (default: each one\'s own, 5)')
  p.add_argument('--warmup', type=int, default=None,
                 help='untimed steps on the PyTorch side (default 1, as ours)')
  p.add_argument('--json', action='store_true',
                 help='also print one JSON object as the last line')
  p.add_argument('--torch_keep_freed_memory', action='store_true',
                 help="give PyTorch jaxdistil's glibc malloc settings too")
  p.add_argument('--matmul_size', type=int, default=None,
                 help='n of the n^3 matmul whose rate MFU is against (default '
                      '2048; smaller only for quick tests)')
  p.add_argument('--timeout', type=float, default=None,
                 help='seconds each side may take (default: no limit)')
  p.add_argument('--data', default=None, metavar='DIR',
                 help='a prepared directory: time both sides on its text and '
                      'compare real (non-padding) tokens/s; jaxdistil packed')
  p.add_argument('--unpacked', action='store_true',
                 help='with --data: also run jaxdistil with --config.packing=False')
  p.add_argument('--data_sequences', type=int, default=None,
                 help='with --data: sequences the PyTorch side reads (default '
                      '50000, a seeded random subset of all shards)')
  args, unknown = p.parse_known_args(argv)
  rest, bad, i = [], [], 0
  while i < len(unknown):
    a = unknown[i]
    if not a.startswith('--config'):
      bad.append(a)
    else:
      if ('=' not in a and i + 1 < len(unknown)
          and not unknown[i + 1].startswith('--')):
        a = f'{a}={unknown[i + 1]}'      # '--config.x 3' -> '--config.x=3'
        i += 1
      rest.append(a)
    i += 1
  if bad:
    p.error(f'unrecognised arguments: {" ".join(bad)}')
  if not any(a.startswith('--config=') for a in rest):
    p.error('--config=configs/<name>.py is required')
  if args.data is None and (args.unpacked or args.data_sequences is not None):
    p.error('--unpacked and --data_sequences go with --data=DIR')
  if any(a.startswith('--config.packing') for a in rest):
    p.error('--config.packing is set by compare.py (packed; --unpacked for both)')
  return args, rest


def main(argv=None):
  args, config_args = parse(sys.argv[1:] if argv is None else argv)
  if args.data is not None:
    result = compare_real(config_args, args.data, args.unpacked, args.steps,
                          args.warmup, args.torch_keep_freed_memory, args.timeout,
                          args.matmul_size, args.data_sequences)
    print(table_real(result), flush=True)
  else:
    result = compare(config_args, args.steps, args.warmup,
                     args.torch_keep_freed_memory, args.timeout, args.matmul_size)
    print(table(result), flush=True)
  if args.json:
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
  main()
