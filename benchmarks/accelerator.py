"""Everything worth measuring on a lent accelerator, in one call.

    PYTHONPATH=. python benchmarks/accelerator.py --output=DIR_OR_FILE.json \\
        [--tiny] [--budget_s=420] [--steps=10] [--torch=auto|cpu|off]

Runs, in order of value, each item in its own try/except (a failure is one
line in the JSON and the next item runs), and rewrites the JSON after every
item, so a run cut short still leaves what it measured:

1. the distillation step (`jaxdistil.bench.benchmark`: the sharded, jitted
   train step of `train`) at the base config (`configs/distilbert_base.py`),
   bfloat16, on random full-length rows at max_len 128 (128 rows) and 512 (32
   rows), with XLA and cuDNN attention; a batch that does not fit is halved
   once;
2. classifier inference (`jaxdistil.inference_bench.time_inference`) on
   synthetic rows of GLUE-like lengths, BERT-base and DistilBERT-base shapes
   with random weights and a 2-way head, batch 1 and 32, bfloat16 (then
   float32 later on);
3. with `torch` and CUDA (`--torch=auto`), the PyTorch reference step
   (`benchmarks/torch_distil.py`, autocast bfloat16, SDPA attention) at the
   same shapes, and PyTorch eager inference at batch 1; each in a child
   process (`benchmarks/accelerator_torch.py`), so that PyTorch's CUDA
   libraries never load beside JAX's and JAX's memory pool stays its own
   (this process gives JAX 60% of the device memory unless
   XLA_PYTHON_CLIENT_MEM_FRACTION is set);
4. packed rows (`synthetic.random_packed_batch`), the step with remat
   ('dots', 'full'), and the float32 inference rows.

No item starts once `--budget_s` seconds have passed since the start (a
running one finishes), so with the default the whole call fits in ten
minutes, compiles included. MFU is against the published bfloat16 peak of a
known chip (`flops.KNOWN_PEAKS`, H200: 989 TFLOP/s dense) where there is one,
else against a matmul measured in the same run. The JSON holds the device
kind, the versions of jax, jaxlib and torch, and each item's settings, wall
time and result or error. `--tiny` runs the same items at `configs/tiny.py`'s
shapes, max_len 32, on any backend (the test runs it on a CPU); cuDNN items
are skipped on a backend without a GPU.

Needs no TensorFlow, TensorFlow Datasets or transformers for its JAX items.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
# Leave room on the device for the PyTorch child processes.
os.environ.setdefault('XLA_PYTHON_CLIENT_MEM_FRACTION', '0.6')

BASE_ROWS = {128: 128, 512: 32}       # rows per step on a big accelerator
TINY_ROWS = 8


def train_config(tiny: bool, max_len: int, rows: int, attention: str = 'xla',
                 remat: str = 'none', dtype: str = 'bfloat16'):
  """The bench config: the base (or tiny) config file at these settings, one
  micro-batch, random teacher. Kernels without attention dropout (cuDNN) get
  a student without it."""
  from jaxdistil import config_lib
  name = 'tiny.py' if tiny else 'distilbert_base.py'
  c = config_lib.load_file(os.path.join(ROOT, 'configs', name))
  c.max_len, c.batch_size, c.micro_batches = max_len, rows, 1
  c.dtype, c.model.attention, c.model.remat = dtype, attention, remat
  c.teacher = 'random'
  if attention != 'xla':
    c.model.student.attention_dropout = 0.0
  return c


def inference_shapes(tiny: bool) -> dict:
  """{name: BertConfig keyword arguments}: BERT-base and DistilBERT-base."""
  if tiny:
    t = dict(vocab_size=128, hidden_size=32, num_layers=2, num_heads=4,
             intermediate_size=64, max_position_embeddings=32)
    return {'bert': t, 'distilbert': dict(t, num_layers=1, type_vocab_size=0,
                                          layout='distilbert')}
  return {'bert': {}, 'distilbert': dict(num_layers=6, type_vocab_size=0,
                                         layout='distilbert')}


def _oom(e: Exception) -> bool:
  text = str(e).lower()
  return ('resource_exhausted' in text or 'out of memory' in text
          or 'gib is free' in text)           # memory_fit's check, before running


def train_item(tiny, max_len, attention='xla', remat='none', packed=False,
               steps=10):
  import jax
  from jaxdistil import bench
  if attention == 'cudnn' and jax.default_backend() != 'gpu':
    return {'skipped': f'cuDNN attention needs a GPU (backend '
                       f'{jax.default_backend()})'}
  rows = TINY_ROWS if tiny else BASE_ROWS[max_len]
  # XLA's CPU backend has no bfloat16 x bfloat16 = float32 dot (tests).
  dtype = 'float32' if jax.default_backend() == 'cpu' else 'bfloat16'
  halved_from = None
  while True:
    config = train_config(tiny, max_len, rows, attention, remat, dtype)
    try:
      r = bench.benchmark(config, steps, matmul_n=512 if tiny else 8192,
                          packed=packed)
      break
    except Exception as e:  # noqa: BLE001: only an OOM is retried
      if not _oom(e) or rows < 2 or halved_from is not None:
        raise
      halved_from, rows = rows, rows // 2
      jax.clear_caches()
      gc.collect()
  r.update(attention=attention, remat=remat, batch_halved_from=halved_from,
           student_attention_dropout=config.model.student.attention_dropout)
  return r


def inference_item(tiny, model, batch, dtype):
  import jax
  from jaxdistil import inference_bench
  from jaxdistil.data import synthetic
  from jaxdistil.glue import heads
  from jaxdistil.models import bert
  cfg = bert.BertConfig(**inference_shapes(tiny)[model])
  key = jax.random.key(0)
  params = bert.init(cfg, key)
  pooler = None
  if model == 'bert':            # BERT's head: its pooler, then the classifier
    pooler = {'dense': {'kernel': 0.02 * jax.random.normal(
        key, (cfg.hidden_size, cfg.hidden_size)),
                        'bias': jax.numpy.zeros(cfg.hidden_size)}}
  head = heads.init_head(cfg, 2, jax.random.key(1), pooler=pooler)
  max_len = 32 if tiny else 128
  n = 2 * batch + 3 if tiny else (256 if batch == 1 else 32 * batch)
  arrays = synthetic.glue_like_pairs(n, cfg.vocab_size, max_len, seed=0)
  kw = dict(dtype=dtype, matmul_n=512 if tiny else 8192, max_len=max_len)
  try:
    r = inference_bench.time_inference(cfg, params, head, arrays, batch, **kw)
  except Exception as e:  # noqa: BLE001: 'auto' chose a kernel that failed
    jax.clear_caches()
    r = inference_bench.time_inference(cfg, params, head, arrays, batch,
                                       attention='xla', **kw)
    r['attention_fallback'] = _line(e)
  r['model'] = model
  return r


def torch_item(spec: dict, timeout: float) -> dict:
  """One PyTorch measurement in a child process (its last stdout line)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]))
  out = subprocess.run([sys.executable, '-m', 'benchmarks.accelerator_torch',
                        json.dumps(spec)], cwd=ROOT, env=env, text=True,
                       capture_output=True, timeout=max(timeout, 30))
  lines = out.stdout.strip().splitlines()
  if out.returncode or not lines:
    tail = (out.stderr.strip().splitlines() or ['no output'])[-1]
    raise RuntimeError(f'exit {out.returncode}: {tail}')
  return json.loads(lines[-1])


def items(tiny: bool, steps: int, torch_device: str | None) -> list:
  """(name, settings, thunk) in order of value."""
  lens = (16, 32) if tiny else (128, 512)
  out = []

  def train(name, max_len, **kw):
    out.append((name, dict(kind='train', max_len=max_len, **kw),
                lambda budget: train_item(tiny, max_len, steps=steps, **kw)))

  def infer(model, batch, dtype):
    out.append((f'inference_{model}_b{batch}_{dtype}',
                dict(kind='inference', model=model, batch=batch, dtype=dtype),
                lambda budget: inference_item(tiny, model, batch, dtype)))

  def torch(name, spec):
    spec = dict(spec, tiny=tiny, device=torch_device, steps=steps)
    out.append((name, spec, lambda budget: torch_item(spec, budget)))

  train(f'train_{lens[0]}_xla', lens[0], attention='xla')
  train(f'train_{lens[1]}_xla', lens[1], attention='xla')
  train(f'train_{lens[1]}_cudnn', lens[1], attention='cudnn')
  for model in ('distilbert', 'bert'):
    infer(model, 1, 'bfloat16')
    infer(model, 32, 'bfloat16')
  if torch_device:
    for length in lens:
      torch(f'torch_train_{length}', dict(kind='train', max_len=length))
    torch('torch_inference_b1', dict(kind='inference', batch=1))
  train(f'train_{lens[0]}_cudnn', lens[0], attention='cudnn')
  train(f'train_{lens[1]}_xla_packed', lens[1], attention='xla', packed=True)
  train(f'train_{lens[1]}_cudnn_dots', lens[1], attention='cudnn', remat='dots')
  train(f'train_{lens[1]}_xla_full', lens[1], attention='xla', remat='full')
  for model in ('distilbert', 'bert'):
    infer(model, 1, 'float32')
    infer(model, 32, 'float32')
  return out


def _line(e: BaseException) -> str:
  text = (str(e).strip().splitlines() or [''])[0][:300]
  return f'{type(e).__name__}: {text}'


def _version(package: str) -> str | None:
  from importlib import metadata
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


def environment() -> dict:
  import jax
  from jaxdistil import inference_bench
  device = jax.devices()[0]
  return {'device_kind': device.device_kind, 'platform': device.platform,
          'device_count': jax.device_count(),
          'versions': {p: _version(p) for p in (
              'jax', 'jaxlib', 'flax', 'optax', 'torch', 'transformers')},
          'cpu': inference_bench.cpu_info(),
          'xla_python_client_mem_fraction':
              os.environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION'),
          'started': datetime.datetime.now(datetime.timezone.utc).isoformat()}


def write(path: str, report: dict) -> None:
  """Atomically (a reader never sees half a file)."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(report, f, indent=1, default=str)
  os.replace(tmp, path)


def output_path(output: str) -> str:
  if output.endswith('.json'):
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    return output
  os.makedirs(output, exist_ok=True)
  return os.path.join(output, 'accelerator.json')


def run(output: str, tiny: bool = False, budget_s: float = 420.0,
        steps: int = 10, torch: str = 'auto',
        only: tuple[str, ...] = ()) -> dict:
  """Every item (those named in `only`, when given) within the budget; the
  report (also written to `output`)."""
  import importlib.util
  known = [name for name, _, _ in items(tiny, steps, 'cpu')]
  unknown = [name for name in only if name not in known]
  if unknown:
    raise ValueError(f'--items: no item {unknown[0]!r}; the items are '
                     f'{", ".join(known)}')
  import jax
  start = time.perf_counter()
  path = output_path(output)
  report = {'command': ' '.join(sys.argv), 'tiny': tiny, 'budget_s': budget_s,
            'items': {}, 'errors': {}}
  try:
    report['environment'] = environment()
  except Exception as e:  # noqa: BLE001: the items may still run
    report['errors']['environment'] = _line(e)
  has_torch = importlib.util.find_spec('torch') is not None
  device = {'off': None, 'cpu': 'cpu' if has_torch else None,
            'auto': 'cuda' if has_torch and jax.default_backend() == 'gpu'
            else None}[torch]
  if device is None:
    report['torch'] = (f'not run (--torch={torch}, torch '
                       f'{"installed" if has_torch else "absent"}, backend '
                       f'{jax.default_backend()})')
  write(path, report)
  chosen = [i for i in items(tiny, steps, device) if not only or i[0] in only]
  for name, settings, thunk in chosen:
    elapsed = time.perf_counter() - start
    if elapsed > budget_s:
      report['items'][name] = {'settings': settings,
                               'skipped': f'budget: {elapsed:.0f} s > {budget_s:.0f} s'}
      write(path, report)
      continue
    report['running'] = name
    write(path, report)
    t = time.perf_counter()
    entry = {'settings': settings}
    try:
      entry['result'] = thunk(budget_s - elapsed)
    except Exception as e:  # noqa: BLE001: one item's failure is one line
      entry['error'] = report['errors'][name] = _line(e)
    entry['wall_s'] = time.perf_counter() - t
    report['items'][name] = entry
    report.pop('running')
    report['elapsed_s'] = time.perf_counter() - start
    write(path, report)
    print(f'{name}: {entry["wall_s"]:.1f} s, '
          + (entry.get('error') or _summary(entry['result'])), flush=True)
    jax.clear_caches()
    gc.collect()
  return report


def _summary(r: dict) -> str:
  if 'skipped' in r:
    return 'skipped: ' + r['skipped']
  if 'tokens_per_s' in r:
    return f"{r['tokens_per_s']:.0f} tokens/s, MFU {r.get('mfu', 0):.3f}"
  if 'latency_ms' in r:
    return (f"p50 {r['latency_ms']['p50']:.2f} ms, "
            f"{r['examples_per_s']:.0f} examples/s, MFU {r.get('mfu', 0):.4f}")
  return 'done'


def main(argv=None) -> int:
  from jaxdistil import cli

  def define(fv):
    from absl import flags
    flags.DEFINE_string('output', None, 'A .json file, or a folder for '
                        'accelerator.json.', flag_values=fv)
    flags.DEFINE_bool('tiny', False, "configs/tiny.py's shapes, max_len 32.",
                      flag_values=fv)
    flags.DEFINE_float('budget_s', 420.0, 'Start no item after this many '
                       'seconds.', flag_values=fv)
    flags.DEFINE_integer('steps', 10, 'Timed training steps an item.',
                         flag_values=fv)
    flags.DEFINE_enum('torch', 'auto', ['auto', 'cpu', 'off'], 'PyTorch '
                      'items: auto (on a GPU), cpu (tests), off.', flag_values=fv)
    flags.DEFINE_list('items', [], 'Run only these items (names as in the '
                      'JSON); default all.', flag_values=fv)
  try:
    args = cli.parse('benchmarks/accelerator.py', __doc__, define, argv)
    cli.require(args, 'output')
  except cli.UsageError as e:
    print(f'benchmarks/accelerator.py: {e}', file=sys.stderr)
    return 2
  try:
    report = run(args.output, args.tiny, args.budget_s, args.steps, args.torch,
                 tuple(args.items))
  except ValueError as e:
    print(f'benchmarks/accelerator.py: {e}', file=sys.stderr)
    return 2
  print(f'wrote {output_path(args.output)} ({len(report["items"])} items, '
        f'{len(report["errors"])} errors, {report.get("elapsed_s", 0):.0f} s)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
