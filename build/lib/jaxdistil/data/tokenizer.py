"""The teacher's WordPiece tokenizer, from a local directory or the Hugging Face hub.

A directory may hold a full Hugging Face tokenizer (`tokenizer.json` or
`tokenizer_config.json`) or just a BERT `vocab.txt` (as `../shared/data/vocab`
does). Anything else is taken as a hub id (`bert-base-uncased`); when the hub
cannot be reached, one line says so within seconds instead of retrying for a
minute.

`fingerprint()` identifies a vocabulary, so that data prepared with one tokenizer
is never silently read with another.
"""

from __future__ import annotations

import hashlib
import os
import socket

SPECIAL_TOKENS = ('pad', 'unk', 'cls', 'sep', 'mask')


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


def load(name_or_dir: str, lowercase: bool = True):
  """A Hugging Face tokenizer for `name_or_dir` (see the module docstring)."""
  from transformers import AutoTokenizer, BertTokenizer   # heavy: import late

  if os.path.isdir(name_or_dir):
    files = set(os.listdir(name_or_dir))
    try:
      if files & {'tokenizer.json', 'tokenizer_config.json'}:
        tok = AutoTokenizer.from_pretrained(name_or_dir)
      elif 'vocab.txt' in files:
        tok = BertTokenizer(vocab=os.path.join(name_or_dir, 'vocab.txt'),
                            do_lower_case=lowercase)
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
  missing = [s for s in SPECIAL_TOKENS if getattr(tok, f'{s}_token_id') is None]
  if missing:
    raise TokenizerError(f'tokenizer {name_or_dir!r} has no {missing} token(s): '
                         f'a BERT-style tokenizer is needed')
  return tok


def special_ids(tok) -> dict:
  return {s: int(getattr(tok, f'{s}_token_id')) for s in SPECIAL_TOKENS}


def fingerprint(tok) -> str:
  """sha256 over the vocabulary (token, id) pairs and the lowercasing flag."""
  vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
  h = hashlib.sha256()
  for token, i in vocab:
    h.update(f'{i}\t{token}\n'.encode('utf-8'))
  h.update(f'lower={getattr(tok, "do_lower_case", None)}'.encode())
  return h.hexdigest()
