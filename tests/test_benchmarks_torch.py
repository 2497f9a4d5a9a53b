"""The PyTorch comparison step (benchmarks/torch_distil.py) does our step's work."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

import jax                                   # noqa: E402
import jax.numpy as jnp                      # noqa: E402
import optax                                 # noqa: E402

from benchmarks import torch_distil as td    # noqa: E402
import helpers  # noqa: E402
from jaxdistil import config_lib, flops, losses, optim  # noqa: E402
from jaxdistil.data import synthetic  # noqa: E402
from jaxdistil.models import bert            # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, 'configs', 'tiny.py')


def tiny_config(**overrides):
  spec = importlib.util.spec_from_file_location('tiny_config', TINY)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  for key, value in overrides.items():
    node = c
    *path, last = key.split('.')
    for p in path:
      node = node[p]
    node[last] = value
  return c


def padded_batch(c, seed=1):
  """A batch with padding, so real, masked and all-token counts all differ."""
  return synthetic.random_batch(np.random.default_rng(seed), c.batch_size,
                                c.max_len, c.model.teacher.vocab_size)


def jax_terms(outputs, batch_np, loss_cfg):
  s_logits, s_hidden, t_logits, t_hidden = (
      jnp.asarray(x.detach().numpy()) for x in outputs)
  batch = {k: jnp.asarray(v) for k, v in batch_np.items()}
  parts = losses.terms(bert.BertOutput(s_logits, (s_hidden,)),
                       bert.BertOutput(t_logits, (t_hidden,)), batch, loss_cfg)
  return parts, losses.counts(batch, loss_cfg)


@pytest.mark.parametrize('restrict_ce_to_mask', [False, True])
def test_step0_loss_terms_match_jaxdistil_losses(restrict_ce_to_mask):
  c = tiny_config(**{'loss.restrict_ce_to_mask': restrict_ce_to_mask})
  d = td.TorchDistiller(c)
  batch_np = padded_batch(c)
  batch = d.to_device(batch_np)
  # The same dropout masks in both calls: the same seed, the same draws.
  torch.manual_seed(123)
  outputs = d.forward(batch)
  torch.manual_seed(123)
  metrics = d.step(batch)

  parts, counts = jax_terms(outputs, batch_np, d.loss_cfg)
  # The torch loss functions on the very same tensors: sums and counts.
  torch_parts = td.loss_terms(*outputs, batch, d.loss_cfg)
  assert set(torch_parts) == set(parts) == {'ce', 'mlm', 'cos', 'mse'}
  # The KL of these random models is tiny (~0.003 a token against an entropy
  # of ~4.8): float32 cancellation leaves both sides ~1e-6 a token from the
  # float64 value, so the KL also gets an absolute float32 tolerance per token.
  abs_per_token = {'ce': 1e-6 * d.loss_cfg.temperature ** 2}
  for k, (s, n) in parts.items():
    ts, tn = torch_parts[k]
    assert float(ts.detach()) == pytest.approx(
        float(s), rel=1e-5, abs=abs_per_token.get(k, 0.0) * float(n)), k
    assert float(tn) == float(n) == float(counts[k]), k
  # And the step's own step-0 metrics: sum / whole-batch count, and the total.
  for k in ('ce', 'mlm', 'cos', 'mse'):
    ours = float(parts[k][0]) / max(float(counts[k]), 1.0)
    assert metrics[f'loss_{k}'] == pytest.approx(
        ours, rel=1e-5, abs=abs_per_token.get(k, 0.0)), k
  ours_total = losses.total({k: s for k, (s, _) in parts.items()}, counts,
                            d.loss_cfg)
  assert metrics['loss'] == pytest.approx(float(ours_total), rel=1e-5)
  real, masked = batch_np['attention_mask'].sum(), batch_np['mlm_mask'].sum()
  assert float(counts['cos']) == real > masked == float(counts['mlm']) > 0
  assert float(counts['ce']) == (masked if restrict_ce_to_mask else real)


def test_same_sizes_dropout_and_frozen_positions():
  c = tiny_config()
  d = td.TorchDistiller(c)
  count = lambda m: sum(p.numel() for p in m.parameters())
  ours = lambda cfg: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
      jax.eval_shape(lambda k: bert.init(cfg, k), jax.random.key(0))))
  assert count(d.student) == ours(d.student_cfg)
  assert count(d.teacher) == ours(d.teacher_cfg)
  assert d.student.training and not d.teacher.training
  assert all(not p.requires_grad for p in d.teacher.parameters())
  emb = d.student.distilbert.embeddings
  assert not emb.position_embeddings.weight.requires_grad
  assert d.student.vocab_projector.weight is emb.word_embeddings.weight
  # Stock DistilBERT's dropout sites (embeddings, attention probabilities, MLP
  # output) at the config's 0.1, and nothing added: no hook anywhere.
  assert d.student.config.dropout == d.student.config.attention_dropout == 0.1
  assert not any(m._forward_hooks or m._forward_pre_hooks
                 for m in d.student.modules())
  assert type(d.student) is transformers.DistilBertForMaskedLM
  n_trainable = sum(p.numel() for p in d.params)
  assert n_trainable == count(d.student) - emb.position_embeddings.weight.numel()


def test_accumulation_equals_one_pass():
  """Strided micro-batches with whole-batch counts: the gradient of one pass."""
  over = {'model.student.hidden_dropout': 0.0,
          'model.student.attention_dropout': 0.0}
  one = td.TorchDistiller(tiny_config(**over))
  four = td.TorchDistiller(tiny_config(micro_batches=4, **over))
  batch_np = padded_batch(tiny_config())
  a = one.accumulate_grads(one.to_device(batch_np))
  b = four.accumulate_grads(four.to_device(batch_np))
  for k in a['sums']:
    assert float(b['sums'][k]) == pytest.approx(float(a['sums'][k]), rel=1e-5), k
  for (name, p), q in zip(one.student.named_parameters(), four.student.parameters()):
    if p.grad is None:
      assert q.grad is None, name
      continue
    np.testing.assert_allclose(q.grad.numpy(), p.grad.numpy(), rtol=1e-4,
                               atol=1e-7, err_msg=name)


def test_optimizer_matches_jaxdistil_optim():
  """Clipping, AdamW, the schedule and the decay mask, against optax's chain."""
  cfg = optim.OptimConfig(weight_decay=0.01, clip_norm=1.0)
  total = 40
  for step in range(total + 2):
    # optax computes the schedule in float32.
    assert td.learning_rate(cfg, total, step) == pytest.approx(
        float(optim.schedule(cfg, total)(step)), rel=1e-6, abs=1e-12)

  rng = np.random.default_rng(0)
  params = {'dense': {'kernel': rng.standard_normal((4, 3)).astype(np.float32),
                      'bias': rng.standard_normal(3).astype(np.float32)},
            'pos': {'embedding': rng.standard_normal((5, 3)).astype(np.float32)}}
  frozen = {'dense': {'kernel': False, 'bias': False}, 'pos': {'embedding': True}}
  grads = [jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32),
                        params) for _ in range(4)]
  tx = optim.make(cfg, total, frozen)
  jp = jax.tree.map(jnp.asarray, params)
  state = tx.init(jp)
  for g in grads:
    updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, jp)
    jp = optax.apply_updates(jp, updates)

  kernel = torch.nn.Parameter(torch.tensor(params['dense']['kernel']))
  bias = torch.nn.Parameter(torch.tensor(params['dense']['bias']))
  opt = torch.optim.AdamW([{'params': [kernel], 'weight_decay': cfg.weight_decay},
                           {'params': [bias], 'weight_decay': 0.0}],
                          lr=cfg.learning_rate, betas=(cfg.b1, cfg.b2), eps=cfg.eps)
  for step, g in enumerate(grads):
    kernel.grad = torch.tensor(g['dense']['kernel'])
    bias.grad = torch.tensor(g['dense']['bias'])
    torch.nn.utils.clip_grad_norm_([kernel, bias], cfg.clip_norm)
    for group in opt.param_groups:
      group['lr'] = td.learning_rate(cfg, total, step)
    opt.step()
  np.testing.assert_allclose(kernel.detach().numpy(), jp['dense']['kernel'],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(bias.detach().numpy(), jp['dense']['bias'],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(jp['pos']['embedding']),
                                params['pos']['embedding'])


def _env():
  # One CPU device for jax (conftest asks for 8 fake ones in this process).
  return dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu')


@pytest.mark.slow
def test_torch_benchmark_prints_json():
  out = subprocess.run(
      [sys.executable, '-m', 'benchmarks.torch_distil', f'--config={TINY}',
       '--steps=2', '--matmul_size=512', '--json'], cwd=ROOT, env=_env(),
      capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  r = json.loads(out.stdout.strip().splitlines()[-1])
  assert r['tokens_per_s'] > 0 and r['step_s'] > 0 and r['mfu'] > 0
  assert len(r['step_times_s']) == 2
  assert r['threads'] == td.cores()
  c = tiny_config()
  assert r['flops_per_token'] == flops.distill_step(
      config_lib.teacher_config(c), config_lib.student_config(c), 16)
  assert r['tokens_per_s'] == pytest.approx(8 * 16 / r['step_s'])
  assert r['mfu'] == pytest.approx(
      r['tokens_per_s'] * r['flops_per_token'] / r['matmul_flops_per_s'])
  assert 'MFU' in out.stdout


def test_torch_benchmark_refuses_a_bad_config():
  with pytest.raises(config_lib.ConfigError, match='batch_size=8 is not divisible'):
    td.benchmark(tiny_config(micro_batches=3), steps=1)


@pytest.mark.slow
def test_compare_prints_both_and_the_ratio():
  out = subprocess.run(
      [sys.executable, '-m', 'benchmarks.compare', f'--config={TINY}',
       '--config.batch_size=8', '--steps', '2', '--matmul_size=512', '--json'],
      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'jaxdistil/PyTorch' in out.stdout and 'tokens/s' in out.stdout
  assert 'MFU' in out.stdout
  r = json.loads(out.stdout.strip().splitlines()[-1])
  ours, theirs = r['jaxdistil'], r['pytorch']
  assert ours['tokens_per_s'] > 0 and theirs['tokens_per_s'] > 0
  assert r['same_flops_per_token']
  assert r['ratio']['tokens_per_s'] == pytest.approx(
      ours['tokens_per_s'] / theirs['tokens_per_s'])
  for key in ('batch_size', 'max_len', 'micro_batches', 'teacher_layers',
              'student_layers', 'dtype'):
    assert ours[key] == theirs[key], key


# --------------------------------------------------------------------------
# Real text (--data): the reader, the reference's group_by_size batching, the
# masking and the benchmark on a tiny prepared directory.

SPECIAL = {'pad': 0, 'unk': 1, 'cls': 2, 'sep': 3, 'mask': 4}


def _crc32c_table():
  table = []
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_CRC_TABLE = _crc32c_table()


def _masked_crc(data: bytes) -> bytes:
  c = 0xFFFFFFFF
  for b in data:
    c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  c ^= 0xFFFFFFFF
  masked = (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
  return masked.to_bytes(4, 'little')


def write_tfrecords(path, payloads):
  """A TFRecord file (as tf.io.TFRecordWriter writes it), without tensorflow."""
  with open(path, 'wb') as f:
    for p in payloads:
      header = len(p).to_bytes(8, 'little')
      f.write(header + _masked_crc(header) + p + _masked_crc(p))


def write_prepared(directory, sequences, max_len, shard_size, vocab_size=128):
  """A prepared directory in jaxdistil.data.corpus's format."""
  os.makedirs(directory, exist_ok=True)
  shards = []
  for i in range(0, len(sequences), shard_size):
    chunk = sequences[i:i + shard_size]
    name = f'shard-{len(shards):05d}.tfrecord'
    write_tfrecords(os.path.join(directory, name),
                    [np.asarray(s, '<u2').tobytes() for s in chunk])
    shards.append({'file': name, 'sequences': len(chunk),
                   'tokens': int(sum(len(s) for s in chunk))})
  meta = {'vocab_size': vocab_size, 'special_ids': SPECIAL, 'max_len': max_len,
          'dtype': 'uint16', 'shards': shards, 'num_sequences': len(sequences),
          'num_tokens': int(sum(s['tokens'] for s in shards))}
  with open(os.path.join(directory, 'metadata.json'), 'w') as f:
    json.dump(meta, f)
  return meta


def random_sequences(rng, n, max_len, vocab_size=128, min_len=12):
  """[CLS] words [SEP], lengths min_len..max_len, a few [UNK] among the words."""
  out = []
  for n_tokens in rng.integers(min_len, max_len + 1, size=n):
    body = rng.integers(5, vocab_size, size=n_tokens - 2)
    body[rng.random(body.shape) < 0.05] = SPECIAL['unk']
    out.append(np.concatenate([[SPECIAL['cls']], body, [SPECIAL['sep']]]))
  return out


DATA_LEN = 32        # tiny's max_position_embeddings: lengths 12..32, 6 groups


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('prepared') / 'len32')
  seqs = random_sequences(np.random.default_rng(7), 300, DATA_LEN)
  write_prepared(directory, seqs, DATA_LEN, shard_size=70)   # 5 shards
  return directory, seqs


def test_reads_every_shard_and_a_seeded_subset_of_all_of_them(prepared):
  directory, seqs = prepared
  got, idx, meta = td.read_prepared(directory)
  assert len(got) == len(seqs) == meta['num_sequences']
  assert all(np.array_equal(a, b) for a, b in zip(got, seqs))
  some, idx, _ = td.read_prepared(directory, max_sequences=60, seed=3)
  assert len(some) == 60 and len(set(idx.tolist())) == 60
  assert list(idx) == sorted(idx)
  assert all(np.array_equal(a, seqs[i]) for a, i in zip(some, idx))
  assert set(idx // 70) == {0, 1, 2, 3, 4}          # drawn from every shard
  again, idx2, _ = td.read_prepared(directory, max_sequences=60, seed=3)
  assert np.array_equal(idx, idx2)
  with pytest.raises(config_lib.ConfigError, match='not a prepared directory'):
    td.read_prepared(os.path.dirname(directory))


SHARED_VOCAB = helpers.vocab_dir()     # the shipped vocabulary without ../shared


def test_reads_what_prepare_writes(tmp_path):
  """The TFRecord reader against jaxdistil.data.corpus's output and tf.data."""
  tf = pytest.importorskip('tensorflow')
  from jaxdistil.data import corpus
  rng = np.random.default_rng(0)
  words = ('the of and a to in is was for on that with as by at from his her an '
           'it were which be this are or had not but have their one all').split()
  text = '\n\n'.join(' '.join(rng.choice(words, int(rng.integers(4, 60)))) + '.'
                     for _ in range(80))
  (tmp_path / 'text.txt').write_text(text + '\n')
  out = str(tmp_path / 'prepared')
  meta = corpus.prepare(str(tmp_path / 'text.txt'), SHARED_VOCAB, 32, out,
                         shard_size=40, progress_bar=False)
  assert len(meta['shards']) > 1
  want = [np.frombuffer(r.numpy(), meta['dtype']).astype(np.int64)
          for s in meta['shards']
          for r in tf.data.TFRecordDataset(os.path.join(out, s['file']))]
  got, _, _ = td.read_prepared(out)
  assert len(got) == len(want) == meta['num_sequences']
  assert all(np.array_equal(a, b) for a, b in zip(got, want))
  cls, sep = meta['special_ids']['cls'], meta['special_ids']['sep']
  assert all(s[0] == cls and s[-1] == sep and len(s) <= 32 for s in got)


def test_length_groups_are_the_references_bins():
  # bins np.arange(3, k, 4) = 3, 7, 11, ...; group = bisect_right(bins, length)
  lengths = [2, 3, 6, 7, 10, 11, 12, 14, 15, 127, 128, 510, 511, 512]
  assert td.length_groups(lengths, 512).tolist() == [
      0, 1, 1, 2, 2, 3, 3, 3, 4, 32, 32, 127, 128, 128]
  assert td.length_groups([31, 32], 32).tolist() == [8, 8]


def _epoch(lengths, batch_size, seed=0):
  groups = td.length_groups(lengths, 512)
  order = np.random.default_rng(seed).permutation(len(lengths))
  return groups, list(td.grouped_batches(groups, batch_size, order))


def test_grouped_sampler_covers_every_sequence_once():
  lengths = np.random.default_rng(1).integers(12, 129, size=1003)
  groups, batches = _epoch(lengths, 8)
  flat = sorted(i for b in batches for i in b)
  assert flat == list(range(len(lengths)))
  assert len(batches) == -(-len(lengths) // 8)       # ceil(N / batch), as len()
  assert all(len(b) == 8 for b in batches[:-1]) and 0 < len(batches[-1]) <= 8


def test_grouped_batches_are_of_similar_lengths():
  lengths = np.random.default_rng(2).integers(12, 129, size=2000)
  groups, batches = _epoch(lengths, 8)
  n_groups = len(set(groups.tolist()))
  one_group = [b for b in batches if len(set(groups[b].tolist())) == 1]
  # Only the end-of-epoch leftovers mix groups: fewer than one batch per group.
  assert len(one_group) >= len(batches) - n_groups
  for b in one_group:
    assert lengths[b].max() - lengths[b].min() <= 3   # one bin is 4 lengths wide
  # Leftovers come last, in increasing group order (neighbouring lengths).
  mixed = batches[len(one_group):]
  assert all(len(set(groups[b].tolist())) == 1 for b in batches[:len(one_group)])
  tail = [g for b in mixed for g in groups[b].tolist()]
  assert tail == sorted(tail)
  # Random order: the same lengths in another epoch give other batches.
  _, other = _epoch(lengths, 8, seed=1)
  assert other[0] != batches[0]


def test_each_batch_is_padded_to_its_longest_row_and_no_more():
  seqs = [np.arange(2, 2 + n) for n in (13, 17, 15)]
  ids, lengths = td.pad_batch(seqs, pad_id=0)
  assert ids.shape == (3, 17) and lengths.tolist() == [13, 17, 15]
  for row, s in zip(ids, seqs):
    assert np.array_equal(row[:len(s)], s) and (row[len(s):] == 0).all()


def test_real_batches_are_grouped_padded_and_full(prepared):
  directory, seqs = prepared
  c = tiny_config(max_len=DATA_LEN, micro_batches=2)
  real = td.RealBatches(c, directory, max_sequences=200)
  assert len(real.sequences) == 200 and real.per_pass == 4
  assert real.max_model_input_size == 32
  steps = real.steps(60, 2)                           # past the end of an epoch
  assert real.epochs >= 1
  for step in steps:
    assert len(step) == 2
    for m in step:
      lengths = m['attention_mask'].sum(1)
      assert m['input_ids'].shape == (4, lengths.max())   # its own longest row
      assert (m['labels'][m['attention_mask'] == 0] == SPECIAL['pad']).all()
      assert (m['mlm_mask'] <= m['attention_mask']).all()
  one_group = sum(np.ptp(m['attention_mask'].sum(1)) <= 3
                  for s in steps for m in s)
  assert one_group >= 0.8 * 2 * len(steps)
  with pytest.raises(config_lib.ConfigError, match='max_len 32'):
    td.RealBatches(tiny_config(), directory)


def test_masking_rate_and_specials_never_chosen():
  rng = np.random.default_rng(0)
  seqs = random_sequences(rng, 256, 128, vocab_size=1000)
  ids, lengths = td.pad_batch(seqs, SPECIAL['pad'])
  special = sorted(SPECIAL.values())
  cand = (np.arange(ids.shape[1])[None] < lengths[:, None]) & ~np.isin(ids, special)
  chosen = masked = kept = 0
  for seed in range(20):
    m = td.mask_batch(ids, lengths, special, SPECIAL['mask'], 1000,
                      np.random.default_rng(seed))
    sel = m['mlm_mask'].astype(bool)
    assert not (sel & ~cand).any()                    # specials and padding: never
    assert np.array_equal(m['labels'], ids)
    assert np.array_equal(m['attention_mask'].sum(1), lengths)
    assert np.array_equal(m['input_ids'][~sel], ids[~sel])
    n = sel.sum()
    assert abs(n - 0.15 * cand.sum()) <= 1            # 15%, rounded stochastically
    chosen += n
    masked += (m['input_ids'][sel] == SPECIAL['mask']).sum()
    kept += (m['input_ids'][sel] == ids[sel]).sum()
  assert masked / chosen == pytest.approx(0.8, abs=0.02)
  assert kept / chosen == pytest.approx(0.1, abs=0.02)   # (+ random = same, 0.1%)


@pytest.mark.slow
def test_torch_benchmark_on_real_batches(prepared):
  directory, _ = prepared
  out = subprocess.run(
      [sys.executable, '-m', 'benchmarks.torch_distil', f'--config={TINY}',
       f'--config.max_len={DATA_LEN}', '--config.micro_batches=2',
       f'--data={directory}', '--data_sequences=200', '--steps=2',
       '--matmul_size=256', '--json'], cwd=ROOT, env=_env(),
      capture_output=True, text=True, timeout=180)
  assert out.returncode == 0, out.stderr[-2000:]
  r = json.loads(out.stdout.strip().splitlines()[-1])
  assert len(r['step_times_s']) == 2 and r['data_sequences'] == 200
  # The same batches, rebuilt here from the same seeds: count their real tokens.
  c = tiny_config(max_len=DATA_LEN, micro_batches=2)
  steps = td.RealBatches(c, directory, 200).steps(r['warmup'] + 2, 2)
  timed = [m for s in steps[r['warmup']:] for m in s]
  real = sum(int(m['attention_mask'].sum()) for m in timed)
  padded = sum(m['attention_mask'].size for m in timed)
  assert r['real_tokens'] == real and r['padded_tokens'] == padded
  assert r['micro_batch_lengths'] == [[m['input_ids'].shape[1] for m in s]
                                      for s in steps[r['warmup']:]]
  assert r['real_tokens_per_s'] == pytest.approx(real / sum(r['step_times_s']))
  assert r['tokens_per_s'] == r['real_tokens_per_s']
  assert r['padding_fraction'] == pytest.approx(1 - real / padded)
  lengths = np.concatenate([m['attention_mask'].sum(1) for m in timed])
  teacher, student = config_lib.teacher_config(c), config_lib.student_config(c)
  want = sum(int(n) * flops.distill_step(teacher, student, int(n)) for n in lengths)
  assert r['flops_per_token'] == pytest.approx(want / real)
  assert r['mfu'] == pytest.approx(
      r['real_tokens_per_s'] * r['flops_per_token'] / r['matmul_flops_per_s'])
  assert 'real tokens/s' in out.stdout and 'padding' in out.stdout


def _fake_runs(monkeypatch, jax_result):
  from benchmarks import compare
  calls = []

  def fake_run(name, cmd, timeout):
    calls.append(cmd)
    if 'jaxdistil.bench' in cmd:
      return dict(jax_result)
    return {'real_tokens_per_s': 100.0, 'padding_fraction': 0.2, 'step_s': 2.0,
            'mfu': 0.1, 'matmul_flops_per_s': 1e11, 'peak_host_rss_bytes': 2 ** 30,
            'batch_size': 32, 'max_len': 128, 'micro_batches': 4,
            'teacher_layers': 12, 'student_layers': 6, 'dtype': 'float32',
            'torch_version': 'x', 'transformers_version': 'y', 'threads': 2,
            'attn_implementation': 'sdpa'}
  monkeypatch.setattr(compare, '_run', fake_run)
  return compare, calls


def test_compare_with_data_runs_both_sides_on_the_text(monkeypatch, capsys):
  compare, calls = _fake_runs(monkeypatch, {
      'real_tokens_per_s': 150.0, 'padding_fraction': 0.01, 'step_s': 1.0,
      'mfu': 0.2, 'matmul_flops_per_s': 2e11, 'peak_host_rss_bytes': 2 ** 30,
      'devices': 1, 'device_kind': 'cpu'})
  compare.main([f'--config={TINY}', '--config.max_len=128', '--data=/d',
                '--unpacked', '--steps', '3', '--json'])
  jax_packed, jax_unpacked, theirs = calls
  for cmd in calls:
    assert '--data=/d' in cmd and '--config.max_len=128' in cmd
    assert '--steps=3' in cmd
  assert '--config.packing=True' in jax_packed
  assert '--config.packing=False' in jax_unpacked
  assert 'benchmarks.torch_distil' in theirs
  assert not any('packing' in a for a in theirs)
  lines = capsys.readouterr().out.strip().splitlines()
  r = json.loads(lines[-1])
  assert r['ratio']['packed']['real_tokens_per_s'] == pytest.approx(1.5)
  assert r['ratio']['unpacked']['real_tokens_per_s'] == pytest.approx(1.5)
  # MFU against the higher matmul rate: the PyTorch side's 0.1 at 1e11 is 0.05.
  assert r['pytorch']['mfu_vs_best_matmul'] == pytest.approx(0.05)
  text = '\n'.join(lines)
  assert 'real tokens/s' in text and 'packed/PyTorch' in text
  assert '1.50x the real tokens/s' in text


def test_compare_with_data_fails_in_one_line_without_real_tokens(monkeypatch):
  compare, calls = _fake_runs(monkeypatch, {'tokens_per_s': 150.0})
  with pytest.raises(SystemExit, match='printed no real_tokens_per_s'):
    compare.main([f'--config={TINY}', '--data=/d'])
  assert len(calls) == 1                   # the PyTorch side never started
