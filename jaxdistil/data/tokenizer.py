"""The teacher's tokenizer, from a local directory or the Hugging Face hub.

WordPiece (BERT, multilingual BERT) and byte-level BPE (RoBERTa) tokenizers both
work: nothing downstream assumes BERT's ids, every special id is read from the
tokenizer (`special_ids`). What a tokenizer must have is a pad, an unknown, a
sequence-start (cls, or bos as RoBERTa-style tokenizers name it), a
sequence-end (sep, or eos) and a mask token.

A directory may hold a full Hugging Face tokenizer (`tokenizer.json` or
`tokenizer_config.json`) or just a BERT `vocab.txt` (as `../shared/data/vocab`
does). A bare vocab.txt does not say whether its text is lowercased; its pieces
do: an uncased vocabulary has no uppercase piece (text is lowercased before
WordPiece, so one could never match), a cased one (bert-base-cased,
multilingual BERT) has thousands. Anything else is taken as a hub id (`bert-base-uncased`); when the hub
cannot be reached, one line says so within seconds instead of retrying for a
minute.

`has_tokenizer()` and `copy_tokenizer()` find and copy the files that make one
(`TOKENIZER_FILES`), local or remote, without loading it.

`fingerprint()` identifies a tokenizer (its vocabulary and lowercasing), so that
data prepared with one is never silently read with another; `vocab_hash()`
identifies the vocabulary alone, and `differences()` says how prepared data and
a teacher's tokenizer disagree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile

SPECIAL_TOKENS = ('pad', 'unk', 'cls', 'sep', 'mask')
# RoBERTa-style tokenizers may name the sequence start and end only bos and eos.
FALLBACK = {'cls': 'bos', 'sep': 'eos'}
NEEDED = ('a tokenizer with pad, unk, cls (or bos), sep (or eos) and mask tokens '
          'is needed')


# The files that make a tokenizer, wherever one is kept (an HF model directory,
# a workdir's tokenizer/, a jaxdistil model directory).
TOKENIZER_FILES = ('vocab.txt', 'tokenizer.json', 'tokenizer_config.json',
                   'special_tokens_map.json', 'added_tokens.json')


class TokenizerError(ValueError):
  """The tokenizer cannot be loaded or does not fit; one line says why."""


def hub_reachable(host: str = 'huggingface.co', timeout: float = 3.0) -> bool:
  if os.environ.get('HF_HUB_OFFLINE', '0') not in ('0', '', 'false', 'False'):
    return False
  try:
    with socket.create_connection((host, 443), timeout=timeout):
      return True
  except OSError:
    return False


def is_cased_vocab(path: str) -> bool:
  """Whether the vocab.txt at `path` has an uppercase piece ([UNK]-style
  bracketed tokens aside): then it is cased (see the module docstring)."""
  with open(path, encoding='utf-8') as f:
    for line in f:
      piece = line.rstrip('\n')
      if piece != piece.lower() and not (piece.startswith('[')
                                         and piece.endswith(']')):
        return True
  return False


def load(name_or_dir: str, lowercase: bool | None = None):
  """A Hugging Face tokenizer for `name_or_dir` (see the module docstring).
  `lowercase` applies to a bare vocab.txt only; None: lowercase unless the
  vocabulary is cased."""
  from transformers import AutoTokenizer, BertTokenizer   # heavy: import late

  if os.path.isdir(name_or_dir):
    files = set(os.listdir(name_or_dir))
    try:
      if files & {'tokenizer.json', 'tokenizer_config.json'}:
        tok = AutoTokenizer.from_pretrained(name_or_dir)
      elif 'vocab.txt' in files:
        vocab = os.path.join(name_or_dir, 'vocab.txt')
        if lowercase is None:
          lowercase = not is_cased_vocab(vocab)
        tok = BertTokenizer(vocab=vocab, do_lower_case=lowercase)
      else:
        raise TokenizerError(
            f'tokenizer directory {name_or_dir!r} holds neither tokenizer.json '
            f'nor vocab.txt: point --tokenizer at a Hugging Face tokenizer '
            f'directory or a BERT vocab.txt folder')
    except TokenizerError:
      raise
    except Exception as e:  # a corrupt or foreign file: say which, in one line
      raise TokenizerError(f'cannot read the tokenizer in {name_or_dir!r}: '
                           f'{type(e).__name__}: {str(e).splitlines()[0]}') from None
  elif os.path.exists(name_or_dir) or name_or_dir.startswith(('.', '/')):
    raise TokenizerError(f'tokenizer path {name_or_dir!r} is not a directory: '
                         f'give the folder that holds vocab.txt or tokenizer.json')
  else:
    if not hub_reachable():
      raise TokenizerError(
          f'cannot reach the Hugging Face hub to fetch tokenizer {name_or_dir!r} '
          f'(offline?): pass a local directory holding its vocab.txt or '
          f'tokenizer.json instead')
    try:
      tok = AutoTokenizer.from_pretrained(name_or_dir)
    except Exception as e:
      raise TokenizerError(f'cannot load tokenizer {name_or_dir!r} from the hub: '
                           f'{str(e).splitlines()[0]}') from None
  missing = [s for s in SPECIAL_TOKENS if _special_id(tok, s) is None]
  if missing:
    raise TokenizerError(f'tokenizer {name_or_dir!r} has no '
                         f'{" / ".join(missing)} token: {NEEDED}')
  return tok


def load_folder(folder: str):
  """`load` for a tokenizer folder that may be a URL (a teacher's on gs://):
  its files are copied to a local temporary folder first."""
  from jaxdistil import fs
  if not fs.is_remote(folder):
    return load(folder)
  local = tempfile.mkdtemp(prefix='jaxdistil-tokenizer-')
  try:
    fs.copy_tree(folder, local)
    return load(local)
  finally:
    shutil.rmtree(local, ignore_errors=True)


def has_tokenizer(directory: str | None) -> bool:
  """Whether `directory` (local or a URL) holds a tokenizer we can load."""
  from jaxdistil import fs
  return bool(directory) and any(
      fs.isfile(fs.join(directory, f)) for f in ('vocab.txt', 'tokenizer.json'))


def copy_tokenizer(source: str | None, output: str) -> list[str]:
  """Copies the tokenizer files of `source` into the folder `output` (either
  side local or a URL; `output` is created); returns the names copied."""
  from jaxdistil import fs
  if not source:
    return []
  copied = [f for f in TOKENIZER_FILES if fs.isfile(fs.join(source, f))]
  if copied:
    fs.makedirs(output)
  for f in copied:
    fs.copy_file(fs.join(source, f), fs.join(output, f))
  return copied


def _special_id(tok, name: str) -> int | None:
  """The id of special token `name`, or of its RoBERTa-style alias (bos for
  cls, eos for sep) when the tokenizer names only that."""
  i = getattr(tok, f'{name}_token_id', None)
  if i is None and name in FALLBACK:
    i = getattr(tok, f'{FALLBACK[name]}_token_id', None)
  return None if i is None else int(i)


def special_ids(tok) -> dict:
  """{'pad', 'unk', 'cls', 'sep', 'mask': id}, as the tokenizer defines them
  (BERT: 0, 100, 101, 102, 103; RoBERTa: 1, 3, 0, 2, 4)."""
  return {s: _special_id(tok, s) for s in SPECIAL_TOKENS}


def _vocab_digest(tok):
  """sha256 object fed with the vocabulary's (id, token) pairs, in id order."""
  vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
  h = hashlib.sha256()
  for token, i in vocab:
    h.update(f'{i}\t{token}\n'.encode('utf-8'))
  return h


def fingerprint(tok) -> str:
  """sha256 over the vocabulary (token, id) pairs and the lowercasing flag."""
  h = _vocab_digest(tok)
  h.update(f'lower={getattr(tok, "do_lower_case", None)}'.encode())
  return h.hexdigest()


def vocab_hash(tok) -> str:
  """sha256 over the vocabulary (token, id) pairs alone. Unlike `fingerprint`
  it ignores the lowercasing flag, which a bare vocab.txt folder cannot state:
  that folder and the same vocabulary saved as a full Hugging Face tokenizer
  hash the same."""
  return _vocab_digest(tok).hexdigest()


def differences(meta: dict, tok) -> list[str]:
  """How prepared data (its metadata) and tokenizer `tok` disagree, as short
  phrases; empty when they agree. The special ids first (the data's value
  first: 'cls 0 vs 101'); when those agree, the vocabulary itself, by its hash,
  unless the metadata predates `vocab_hash` (then that part is skipped)."""
  ours = meta.get('special_ids', {})
  theirs = special_ids(tok)
  diffs = [f'{s} {ours.get(s)} vs {theirs[s]}' for s in SPECIAL_TOKENS
           if ours.get(s) != theirs[s]]
  if diffs:
    return [f'special ids differ (data vs teacher: {", ".join(diffs)})']
  if meta.get('vocab_hash') and meta['vocab_hash'] != vocab_hash(tok):
    return [f'the vocabularies differ ({meta.get("vocab_size")} vs {len(tok)} '
            f'tokens, same special ids)']
  return []
