"""Packed rows through the model: each sequence as if it ran alone.

A packed row holds several `[CLS] ... [SEP]` sequences, with `segment_ids`
(0 = padding, 1, 2, ... per sequence) and positions restarting at 0 in each.
For every sequence, the logits and every hidden state of the packed forward
pass must equal those of the same sequence run alone (1e-5 max abs, float32),
for the BERT layout (token types), the DistilBERT layout and an imported
Hugging Face teacher; and one step's gradients on a packed batch must equal
those on the same sequences unpacked (1e-5 relative).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistil import losses
from jaxdistil.models import bert, student_init

ATOL = 1e-5
apply = jax.jit(bert.apply, static_argnums=0)   # op by op is slow on a CPU
MAX_LEN = 24
# Two packed rows: (7, 9, 5) fill 21 of 24, (12, 6) fill 18.
ROWS = ((7, 9, 5), (12, 6))


def config(type_vocab_size=2, layout='bert'):
  return bert.BertConfig(vocab_size=61, hidden_size=32, num_layers=2, num_heads=4,
                         intermediate_size=64, max_position_embeddings=MAX_LEN,
                         type_vocab_size=type_vocab_size, hidden_dropout=0.0,
                         attention_dropout=0.0, layout=layout)


def random_params(cfg, seed=0):
  """BERT's init, then every LayerNorm and bias perturbed so no mapping hides."""
  params = bert.init(cfg, jax.random.key(seed))
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  leaves = [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return jax.tree.unflatten(tree, leaves)


def sequences(rng, vocab):
  """[CLS]=1 ... [SEP]=2 sequences of the lengths in ROWS."""
  out = []
  for row in ROWS:
    for n in row:
      ids = rng.integers(5, vocab, size=n)
      ids[0], ids[-1] = 1, 2
      out.append(ids.astype(np.int32))
  return out


def pack(seqs, fill=0):
  """seqs laid into ROWS: ids, segment ids, positions (numpy, padded with 0)."""
  ids = np.full((len(ROWS), MAX_LEN), fill, np.int32)
  seg = np.zeros_like(ids)
  pos = np.zeros_like(ids)
  k = 0
  for r, row in enumerate(ROWS):
    start = 0
    for s, n in enumerate(row):
      ids[r, start:start + n] = seqs[k]
      seg[r, start:start + n] = s + 1
      pos[r, start:start + n] = np.arange(n)
      start += n
      k += 1
  return ids, seg, pos


def spans():
  """(row, start, length) of each sequence in the packed rows."""
  out = []
  for r, row in enumerate(ROWS):
    start = 0
    for n in row:
      out.append((r, start, n))
      start += n
  return out


def check_packed_equals_alone(cfg, params, token_types=False):
  rng = np.random.default_rng(0)
  seqs = sequences(rng, cfg.vocab_size)
  ids, seg, pos = pack(seqs)
  packed = apply(cfg, params, jnp.asarray(ids), jnp.asarray(seg > 0),
                      segment_ids=jnp.asarray(seg), position_ids=jnp.asarray(pos))
  # position_ids default to restarting per segment.
  derived = apply(cfg, params, jnp.asarray(ids), jnp.asarray(seg > 0),
                       segment_ids=jnp.asarray(seg))
  real = seg > 0             # padding positions may differ; they are unused
  np.testing.assert_array_equal(np.asarray(packed.logits)[real],
                                np.asarray(derived.logits)[real])
  # Alone: one sequence per row (padded, so one compile serves them all).
  alone_ids = np.zeros((len(seqs), MAX_LEN), np.int32)
  for k, q in enumerate(seqs):
    alone_ids[k, :len(q)] = q
  alone = apply(cfg, params, jnp.asarray(alone_ids),
                     jnp.asarray(alone_ids > 0))
  worst = 0.0
  for k, (r, start, n) in enumerate(spans()):
    got = [packed.logits] + list(packed.hidden_states)
    want = [alone.logits] + list(alone.hidden_states)
    for g, w in zip(got, want):
      err = float(np.max(np.abs(np.asarray(g[r, start:start + n]) -
                                np.asarray(w[k, :n]))))
      worst = max(worst, err)
  assert worst <= ATOL, worst
  return worst


def test_position_ids_restart_per_segment():
  seg = jnp.asarray([[1, 1, 1, 2, 2, 3, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
  np.testing.assert_array_equal(
      np.asarray(bert.position_ids_of(seg)),
      [[0, 1, 2, 0, 1, 0, 0, 1], [0, 1, 2, 3, 4, 5, 6, 7]])


def test_attention_is_block_diagonal():
  seg = jnp.asarray([[1, 1, 2, 0]])
  allowed = np.asarray(bert.attention_bias_of(seg > 0, seg))[0, 0] == 0.0
  np.testing.assert_array_equal(allowed, [[1, 1, 0, 0], [1, 1, 0, 0],
                                          [0, 0, 1, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize('layout', [pytest.param('bert', marks=pytest.mark.slow),
                                    'distilbert'])
def test_packed_equals_alone(layout):
  cfg = config(2 if layout == 'bert' else 0, layout)
  check_packed_equals_alone(cfg, random_params(cfg))


@pytest.mark.slow
def test_packed_equals_alone_imported_hf_teacher(tmp_path):
  torch = pytest.importorskip('torch')
  transformers = pytest.importorskip('transformers')
  from jaxdistil import convert
  hf_cfg = transformers.BertConfig(
      vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=64, max_position_embeddings=MAX_LEN,
      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  torch.manual_seed(0)
  model = transformers.BertForMaskedLM(hf_cfg).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  model.save_pretrained(tmp_path / 'hf')
  loaded = convert.load_model(str(tmp_path / 'hf'))
  check_packed_equals_alone(loaded.config, loaded.params)
  # And each sequence packed equals transformers' own output on it alone.
  seqs = sequences(np.random.default_rng(0), 61)
  ids, seg, pos = pack(seqs)
  packed = bert.apply(loaded.config, loaded.params, jnp.asarray(ids),
                      jnp.asarray(seg > 0), segment_ids=jnp.asarray(seg))
  for k, (r, start, n) in enumerate(spans()):
    with torch.no_grad():
      ref = model(torch.tensor(seqs[k][None].astype(np.int64))).logits.numpy()
    np.testing.assert_allclose(np.asarray(packed.logits[r, start:start + n]),
                               ref[0], atol=ATOL, rtol=0)


@pytest.mark.slow
def test_packed_step_gradients_equal_unpacked():
  """The distillation loss's gradients: packed batch == the same sequences
  one per row, with the same masks (1e-5 relative, per leaf)."""
  teacher_cfg = config(2, 'bert')
  student_cfg = student_init.student_config(teacher_cfg, 1)
  teacher = random_params(teacher_cfg, 3)
  student = student_init.init_from_teacher(teacher, teacher_cfg, student_cfg, (1,))
  loss_cfg = losses.LossConfig()
  rng = np.random.default_rng(1)
  seqs = sequences(rng, 61)
  chosen = [(rng.random(len(s)) < 0.3) & (np.arange(len(s)) > 0)
            & (np.arange(len(s)) < len(s) - 1) for s in seqs]
  masked = [np.where(c, 3, s).astype(np.int32) for s, c in zip(seqs, chosen)]

  ids, seg, pos = pack(masked)
  labels = pack(seqs)[0]
  mlm = pack([c.astype(np.int32) for c in chosen])[0]
  packed = {'input_ids': ids, 'attention_mask': (seg > 0).astype(np.int32),
            'labels': labels, 'mlm_mask': mlm, 'segment_ids': seg,
            'position_ids': pos}
  n = len(seqs)
  unpacked = {k: np.zeros((n, MAX_LEN), np.int32)
              for k in ('input_ids', 'attention_mask', 'labels', 'mlm_mask')}
  for k, s in enumerate(seqs):
    unpacked['input_ids'][k, :len(s)] = masked[k]
    unpacked['attention_mask'][k, :len(s)] = 1
    unpacked['labels'][k, :len(s)] = s
    unpacked['mlm_mask'][k, :len(s)] = chosen[k]

  def grads(batch):
    batch = jax.tree.map(jnp.asarray, batch)
    kw = {k: batch[k] for k in ('segment_ids', 'position_ids') if k in batch}
    t = bert.apply(teacher_cfg, teacher, batch['input_ids'],
                   batch['attention_mask'], **kw)
    counts = losses.counts(batch, loss_cfg)

    def loss(p):
      s = bert.apply(student_cfg, p, batch['input_ids'], batch['attention_mask'],
                     **kw)
      parts = losses.terms(s, t, batch, loss_cfg)
      return losses.total({k: v for k, (v, _) in parts.items()}, counts, loss_cfg)
    return jax.value_and_grad(loss)(student)

  grads = jax.jit(grads)
  (loss_p, g_p), (loss_u, g_u) = grads(packed), grads(unpacked)
  np.testing.assert_allclose(float(loss_p), float(loss_u), rtol=1e-6)
  rel = jax.tree.leaves(jax.tree.map(
      lambda a, b: float(np.linalg.norm(np.asarray(a) - np.asarray(b)) /
                         max(np.linalg.norm(np.asarray(b)), 1e-30)), g_p, g_u))
  # The key bias's gradient is exactly 0 in exact arithmetic (round-off only).
  norms = jax.tree.leaves(jax.tree.map(lambda b: float(np.linalg.norm(b)), g_u))
  rel = [r for r, nrm in zip(rel, norms) if nrm > 1e-6]
  assert max(rel) <= 1e-5, max(rel)
