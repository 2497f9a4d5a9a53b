"""A transfer set for task distillation: TinyBERT's data augmentation with a
masked-LM model.

As TinyBERT's (Jiao et al. 2020, and its `data_augmentation.py`):
- In each text column, a word (BERT's split) is eligible when it is one
  WordPiece, alphabetic (no digits, no punctuation) and not a stop word
  (`STOP_WORDS`), within the first (max_len - 3) // 2 pieces.
- Its candidates are the MLM's top k (15) whole-word pieces at the word's
  position in `[CLS] text with the word masked [SEP] text [SEP]` (segments 0
  and 1): the MLM sees the original sentence as context.
- A column is drawn N times (`copies`; `copies_for`: 10 for MNLI and QQP, 20
  for SST-2 and QNLI, 30 for the others): each eligible word is replaced with
  probability p (0.4) by a candidate drawn uniformly. A draw equal to the
  original or to an earlier draw is dropped, so an example gives at most N
  new rows a column, fewer when it has few eligible words.
- In a pair, each column is augmented in turn while the other keeps its
  original text (TinyBERT's augment ids for pair tasks).
Where it differs: a word of several pieces is kept (TinyBERT replaces it by a
GloVe neighbour; there are no GloVe vectors here), the original example is
not repeated in the set (it is in the training rows already, with its
label), and the text around a replaced word keeps its case and spacing
(TinyBERT writes its lowercased tokens joined by spaces). Draws come from
`default_rng((seed, index, column, draw))`. The MLM runs jitted on one
shard's masked rows at a time, sorted by length, in fixed-size batches
padded to length buckets: the batches, and the round-off that could reorder
near-equal candidates, depend on the shard only.

The folder holds `augment.json` (settings; the task and a fingerprint of the
source rows, which `glue --transfer_set` checks against the training rows it
trains on; the MLM's fingerprint), shards `shard-NNNNN-of-MMMMM.tsv` of
`shard_size` source examples (lines `index<TAB>text_a[<TAB>text_b]`, by
index, then column, then draw; tabs and line breaks in a text become spaces)
and `progress.json` (shards done), each written atomically. A killed run,
called again with the same settings, continues at the first shard not marked
done, to output byte-identical to an uninterrupted run's; other settings on
the folder are refused in one line. The examples have no labels:
`read_transfer_set` gives them label weight 0, for the teacher's soft
targets (`glue.kd`) alone to teach.

Over 300 lines on purpose: the recipe, its resumable shards and the reading
and checking of the set it writes share one format, kept in one place.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import unicodedata
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistil import fs
from jaxdistil.data import tokenizer as tokenizer_lib
from jaxdistil.glue import teacher_cache
from jaxdistil.glue.batching import bucket_lengths, bucket_of
from jaxdistil.glue.data import Examples
from jaxdistil.glue.tasks import GlueError
from jaxdistil.models import bert

FORMAT = 2          # 2: the task and source rows recorded, TinyBERT's draws
META = 'augment.json'
PROGRESS = 'progress.json'
_SPACES = str.maketrans('\t\n\r', '   ')     # a TSV field holds none of these


# English stop words, never replaced (the common function words: articles,
# pronouns, auxiliaries, prepositions, conjunctions), as TinyBERT skips them.
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been
before being below between both but by can could did do does doing down during
each few for from further had has have having he her here hers herself him
himself his how i if in into is it its itself just me more most my myself no
nor not now of off on once only or other ought our ours ourselves out over own
same she should so some such than that the their theirs them themselves then
there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours
yourself yourselves s t d ll m o re ve y don won isn aren wasn weren hasn
haven hadn doesn didn couldn shouldn wouldn mustn needn mightn shan ain
""".split())

# TinyBERT's draws per text column by task (its official code).
TASK_COPIES = {'MNLI': 10, 'QQP': 10, 'SST-2': 20, 'QNLI': 20}
DEFAULT_COPIES = 30


def copies_for(task_name: str) -> int:
  return TASK_COPIES.get(task_name, DEFAULT_COPIES)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  copies: int = 20          # N draws per text column of an example
  p: float = 0.4            # probability of replacing an eligible word
  top_k: int = 15           # candidates per word (TinyBERT's M)
  seed: int = 0
  max_len: int = 128        # MLM input length ([CLS] + pieces + [SEP])
  batch_size: int = 64      # masked rows per MLM call
  shard_size: int = 1000    # source examples per output shard

  def check(self) -> None:
    if not 0.0 <= self.p <= 1.0:
      raise GlueError(f'augmentation p={self.p}: must be in [0, 1]')
    for name, low in (('top_k', 1), ('batch_size', 1), ('shard_size', 1),
                      ('max_len', 3), ('copies', 0)):
      if getattr(self, name) < low:
        raise GlueError(f'augmentation {name}={getattr(self, name)}: must be '
                        f'>= {low}')


def _is_punctuation(ch: str) -> bool:
  """BERT's rule: ASCII symbols, and Unicode punctuation (P*)."""
  cp = ord(ch)
  return (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
          or unicodedata.category(ch).startswith('P'))


def word_spans(text: str) -> list[tuple[int, int]]:
  """(start, end) of each word: runs between spaces, each punctuation
  character a word of its own."""
  spans, start = [], None
  for i, ch in enumerate(text + ' '):        # the space ends the last word
    if ch.isspace() or _is_punctuation(ch):
      if start is not None:
        spans.append((start, i))
      start = None
      if not ch.isspace():
        spans.append((i, i + 1))
    elif start is None:
      start = i
  return spans


def candidates(tokenizer, vocab_size: int) -> tuple[np.ndarray, list[str]]:
  """([vocab_size] bool: the pieces that may replace a word (not special, not
  a `##` continuation, not bracketed like [unused0], with a letter or digit),
  every id's piece). One line unless the tokenizer is a WordPiece one."""
  vocab = tokenizer.get_vocab()
  allowed, strings = np.zeros(vocab_size, bool), [''] * vocab_size
  special = set(tokenizer.all_special_ids)
  for token, i in ((t, i) for t, i in vocab.items() if i < vocab_size):
    strings[i] = token
    allowed[i] = (i not in special and not token.startswith('##')
                  and not (token.startswith('[') and token.endswith(']'))
                  and any(c.isalnum() for c in token))
  if not any(t.startswith('##') for t in vocab) or not allowed.any():
    raise GlueError('augmentation needs a WordPiece (BERT) tokenizer with '
                    'whole-word pieces: this one has no ## pieces or no words')
  return allowed, strings

@functools.partial(jax.jit, static_argnums=(0, 1))
def _top_k(cfg, k: int, params, ids, mask, types, positions, allowed):
  """[batch, k] ids of the best allowed pieces at each row's masked position."""
  logits = bert.apply(cfg, params, ids, mask, types).logits
  at = jnp.take_along_axis(logits, positions[:, None, None], axis=1)[:, 0]
  return jax.lax.top_k(jnp.where(allowed, at, -jnp.inf), k)[1]


def eligible(word: str, pieces: list[int], unk: int) -> bool:
  """A word TinyBERT replaces: one piece, alphabetic, not a stop word."""
  return (len(pieces) == 1 and pieces[0] != unk and word.isalpha()
          and word.lower() not in STOP_WORDS)


def _plan_text(text: str, spans: list, pieces: list[list[int]], specials: dict,
               max_len: int, queries: list) -> list[tuple[int, int, int]]:
  """(start, end, query row) of the eligible words of one text (its word
  spans and their pieces); appends their masked rows (ids, mask position,
  token types) to `queries`: `[CLS] masked [SEP] text [SEP]`."""
  flat = [t for p in pieces for t in p][:(max_len - 3) // 2]
  types = [0] * (len(flat) + 2) + [1] * (len(flat) + 1)
  words, offset = [], 0
  for (start, end), p in zip(spans, pieces):
    if offset < len(flat) and eligible(text[start:end], p, specials['unk']):
      row = [specials['cls']] + flat + [specials['sep']] + flat + [specials['sep']]
      row[offset + 1] = specials['mask']
      words.append((start, end, len(queries)))
      queries.append((row, offset + 1, types))
    offset += len(p)
  return words


def _run_queries(queries, cfg, params, allowed, k, batch_size, buckets):
  """[len(queries), k] candidate ids, by batches of rows of similar length."""
  out = np.zeros((len(queries), k), np.int32)
  lengths = np.array([len(r) for r, _, _ in queries])
  order = np.argsort(lengths, kind='stable')
  with_types = cfg.type_vocab_size >= 2    # a DistilBERT-layout MLM has none
  for s in range(0, len(order), batch_size):
    index = order[s:s + batch_size]
    full = np.concatenate([index, np.full(batch_size - len(index), index[0])])
    length = int(bucket_of(lengths[index].max(), buckets))
    ids, mask, types = (np.zeros((batch_size, length), np.int32) for _ in range(3))
    for j, q in enumerate(full):
      row, _, row_types = queries[q]
      ids[j, :len(row)], mask[j, :len(row)] = row, 1
      types[j, :len(row)] = row_types if with_types else 0
    positions = np.array([queries[q][1] for q in full], np.int32)
    got = np.asarray(_top_k(cfg, k, params, ids, mask, types, positions, allowed))
    out[index] = got[:len(index)]
  return out


def _copy_text(text: str, words: list, candidates, strings, rng, p) -> str:
  """One copy of a text: each eligible word replaced with probability p by a
  uniformly drawn candidate (two draws per word whatever p)."""
  parts, last = [], 0
  for start, end, query in words:
    u, pick = rng.random(), rng.integers(candidates.shape[1])
    if u < p:
      parts += [text[last:start], strings[candidates[query, pick]]]
      last = end
  return ''.join(parts) + text[last:]


def _shard(examples: Examples, lo: int, hi: int, mlm, tokenizer,
           cfg: AugmentConfig) -> str:
  """The TSV text of the copies of examples lo..hi-1."""
  bert_cfg, params, allowed, k, strings, buckets = mlm
  specials = tokenizer_lib.special_ids(tokenizer)
  columns = [c for c in (examples.text_a, examples.text_b) if c is not None]
  texts = [col[i] for i in range(lo, hi) for col in columns]
  spans = [word_spans(t) for t in texts]
  words = [t[a:b] for t, s in zip(texts, spans) for a, b in s]
  pieces = tokenizer(words, add_special_tokens=False, return_attention_mask=False,
                     return_token_type_ids=False)['input_ids'] if words else []
  queries, plans, start = [], [], np.cumsum([0] + [len(s) for s in spans])
  for j, t in enumerate(texts):
    plans.append(_plan_text(t, spans[j], pieces[start[j]:start[j + 1]],
                            specials, cfg.max_len, queries))
  candidates = _run_queries(queries, bert_cfg, params, allowed, k,
                            cfg.batch_size, buckets)
  lines = []
  for i in range(lo, hi):
    base = (i - lo) * len(columns)
    original = [texts[base + j].translate(_SPACES) for j in range(len(columns))]
    for j in range(len(columns)):          # a pair: one column at a time
      seen = {tuple(original)}
      for c in range(cfg.copies):
        rng = np.random.default_rng((cfg.seed, i, j, c))
        new = list(original)
        new[j] = _copy_text(texts[base + j], plans[base + j], candidates,
                            strings, rng, cfg.p).translate(_SPACES)
        if tuple(new) in seen:               # the original, or drawn already
          continue
        seen.add(tuple(new))
        lines.append('\t'.join([str(i)] + new) + '\n')
  return ''.join(lines)


def source_fingerprint(examples: Examples) -> str:
  """sha256 of the source rows' texts, in order (no tokenizer): what a
  transfer set was made from, checked against the rows a run trains on."""
  return teacher_cache.fingerprint_examples(examples, 0, 'texts')


def shard_name(s: int, n: int) -> str:
  return f'shard-{s:05d}-of-{n:05d}.tsv'


def _settings(examples, bert_cfg, params, tokenizer, cfg: AugmentConfig,
              task: str | None) -> dict:
  return {'format': FORMAT, **dataclasses.asdict(cfg), 'task': task,
          'source': source_fingerprint(examples),
          'examples': len(examples), 'pair': examples.text_b is not None,
          'label_dtype': np.asarray(examples.labels).dtype.str,
          'shards': -(-len(examples) // cfg.shard_size),
          'data': teacher_cache.fingerprint_examples(examples, cfg.max_len,
                                                     tokenizer),
          'mlm': teacher_cache.fingerprint_teacher((bert_cfg, params))}


def _start(output_dir: str, settings: dict) -> int:
  """The shards done in `output_dir` (0 if new); refuses other settings."""
  meta = os.path.join(output_dir, META)
  if os.path.isfile(meta):
    was = json.loads(fs.read_text(meta))
    differ = sorted(k for k in set(was) | set(settings)
                    if was.get(k) != settings.get(k))
    if differ:
      raise GlueError(f'{output_dir} holds an augmentation with other settings '
                      f'({", ".join(differ)} differ): use another output folder '
                      f'or remove it')
    return _done(output_dir)
  fs.refuse_nonempty(output_dir, 'augmentation output folder', GlueError)
  os.makedirs(output_dir, exist_ok=True)
  fs.write_text_atomic(meta, json.dumps(settings, indent=1, sort_keys=True) + '\n')
  return 0


def _done(folder: str) -> int:
  """The shards marked done (none before the first marker)."""
  path = os.path.join(folder, PROGRESS)
  return json.loads(fs.read_text(path))['done'] if os.path.isfile(path) else 0


def augment(examples: Examples, mlm_config, mlm_params: dict, tokenizer,
            output_dir: str, cfg: AugmentConfig = AugmentConfig(),
            on_shard: Callable[[int], None] | None = None,
            task: str | None = None) -> dict:
  """Writes (or finishes) the transfer set of `examples` (the training rows
  of `task`) in `output_dir`; returns its settings (`augment.json`) and
  'rows', the new examples written. The MLM is (`bert.BertConfig`, params
  with the `cls` head) and `tokenizer` its WordPiece tokenizer. `on_shard(s)`
  runs after shard s is written and marked done (progress; an exception there
  stops the run, which a later call resumes)."""
  cfg.check()
  if len(examples) == 0 or cfg.copies == 0:
    raise GlueError(f'empty transfer set: {len(examples)} examples x '
                    f'{cfg.copies} copies; give training examples and copies >= 1')
  allowed, strings = candidates(tokenizer, mlm_config.vocab_size)
  if 'cls' not in mlm_params or cfg.max_len > mlm_config.max_position_embeddings:
    raise GlueError(f'augmentation needs an MLM with its head (cls/predictions) '
                    f'and max_len={cfg.max_len} <= its '
                    f'{mlm_config.max_position_embeddings} positions')
  params = {k: mlm_params[k] for k in ('embeddings', 'encoder', 'cls')}
  settings = _settings(examples, mlm_config, params, tokenizer, cfg, task)
  done = _start(output_dir, settings)
  mlm = (mlm_config, jax.device_put(params), allowed,
         min(cfg.top_k, int(allowed.sum())), strings,
         bucket_lengths(cfg.max_len))
  for s in range(done, settings['shards']):
    lo, hi = s * cfg.shard_size, min((s + 1) * cfg.shard_size, len(examples))
    fs.write_text_atomic(os.path.join(output_dir, shard_name(s, settings['shards'])),
                         _shard(examples, lo, hi, mlm, tokenizer, cfg))
    fs.write_text_atomic(os.path.join(output_dir, PROGRESS),
                         json.dumps({'done': s + 1}) + '\n')
    if on_shard is not None:
      on_shard(s)
  rows = 0
  for s in range(settings['shards']):
    with open(os.path.join(output_dir, shard_name(s, settings['shards'])),
              'rb') as f:
      rows += sum(1 for _ in f)
  return dict(settings, rows=rows)


def check_matches(transfer: 'TransferSet', task_name: str, train: Examples,
                  where: str) -> None:
  """One line unless `transfer` was made for `task_name` from exactly these
  training rows (`train`, after --max_train_examples' subset)."""
  meta = transfer.meta
  if meta.get('format') != FORMAT or not meta.get('task'):
    raise GlueError(f'{where} does not record the task and rows it was made '
                    f'from (made before they were recorded, or without a '
                    f'task): make it again with python -m jaxdistil.augment')
  if meta['task'] != task_name:
    raise GlueError(f'{where} is a transfer set for {meta["task"]}, not '
                    f'{task_name}: make one from {task_name}\'s training rows')
  if meta.get('source') != source_fingerprint(train):
    raise GlueError(f'{where} was made from other {task_name} training rows '
                    f'than these {len(train)} (another --max_train_examples, '
                    f'--seed or data folder): make it with the same ones')


class TransferSet(NamedTuple):
  examples: Examples          # labels all zero: there are none
  label_weights: np.ndarray   # float32 zeros: no row has a gold label
  source: np.ndarray          # int64: the training example each row came from
  meta: dict                  # its augment.json: settings, task, fingerprints


def read_transfer_set(folder: str) -> TransferSet:
  """The augmented examples of a finished `augment` folder, in shard order."""
  if not os.path.isfile(os.path.join(folder, META)):
    raise GlueError(f'{folder} is not an augmentation folder (no {META})')
  meta, done = json.loads(fs.read_text(os.path.join(folder, META))), _done(folder)
  if done < meta['shards']:
    raise GlueError(f'{folder}: augmentation incomplete ({done} of '
                    f'{meta["shards"]} shards); run it again with the same '
                    f'settings to finish')
  if meta.get('format') != FORMAT:
    raise GlueError(f'{folder} is a transfer set of format '
                    f'{meta.get("format")}, made before the task and source '
                    f'rows were recorded: make it again with python -m '
                    f'jaxdistil.augment')
  fields, rows = 3 if meta['pair'] else 2, []
  for s in range(meta['shards']):
    path = os.path.join(folder, shard_name(s, meta['shards']))
    with open(path, encoding='utf-8', newline='\n') as f:   # only \n ends a row
      for lineno, line in enumerate(f, 1):
        rows.append(line.rstrip('\n').split('\t'))
        if len(rows[-1]) != fields:
          raise GlueError(f'{path}:{lineno}: {len(rows[-1])} tab-separated '
                          f'fields, expected {fields}')
  n = len(rows)
  examples = Examples([r[1] for r in rows],
                      [r[2] for r in rows] if meta['pair'] else None,
                      np.zeros(n, np.dtype(meta['label_dtype'])),
                      f'transfer:{folder}')
  return TransferSet(examples, np.zeros(n, np.float32),
                     np.array([int(r[0]) for r in rows], np.int64), meta)
