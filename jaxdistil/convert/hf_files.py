"""Reading a Hugging Face model directory: where it is, its config, its tensors.

Tensors are read one at a time (a safetensors file is memory-mapped; a
`pytorch_model.bin` is opened with `mmap=True`), so importing needs about the
model's size in memory once, not twice. Sharded checkpoints are found through
their `*.index.json`.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from jaxdistil.data.tokenizer import TOKENIZER_FILES


class ConvertError(ValueError):
  """A model that cannot be converted; one line says what is wrong and what to do."""


WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json',
                'pytorch_model.bin', 'pytorch_model.bin.index.json')


def looks_like_path(name: str) -> bool:
  """A hub id is `name` or `org/name`; anything else is meant as a path."""
  return (os.path.exists(name) or name.startswith(('.', '/', '~'))
          or name.count('/') > 1)


def resolve(name_or_dir: str) -> str:
  """A local directory for `name_or_dir`: itself, or a hub snapshot of its
  config, weights and tokenizer files (one line when the hub is unreachable)."""
  path = os.path.expanduser(name_or_dir)
  if os.path.isdir(path):
    return path
  if os.path.exists(path):
    raise ConvertError(f'{name_or_dir!r} is a file, not a model directory: give '
                       f'the folder that holds config.json and the weights')
  if looks_like_path(name_or_dir):
    raise ConvertError(f'{name_or_dir!r} does not exist: give a Hugging Face model '
                       f'directory (config.json + weights) or a hub id')
  from jaxdistil.data.tokenizer import hub_reachable
  if not hub_reachable():
    raise ConvertError(f'cannot reach the Hugging Face hub to fetch {name_or_dir!r} '
                       f'(offline?): download it elsewhere with save_pretrained '
                       f'and pass its directory')
  import huggingface_hub
  try:
    return huggingface_hub.snapshot_download(
        name_or_dir, allow_patterns=['config.json', '*.safetensors',
                                     '*.safetensors.index.json', *TOKENIZER_FILES])
  except Exception as e:
    raise ConvertError(f'cannot fetch {name_or_dir!r} from the hub: '
                       f'{type(e).__name__}: {str(e).splitlines()[0]}') from None


def read_config(directory: str) -> dict:
  path = os.path.join(directory, 'config.json')
  if not os.path.isfile(path):
    raise ConvertError(f'{directory} has no config.json: it is not a Hugging Face '
                       f'model directory (save one with save_pretrained)')
  try:
    with open(path) as f:
      config = json.load(f)
  except (OSError, ValueError) as e:
    raise ConvertError(f'cannot read {path}: {e}') from None
  if not isinstance(config, dict):
    raise ConvertError(f'{path} does not hold a JSON object')
  return config


# ---------------------------------------------------------------------------
# safetensors, read by hand: the header is JSON, the data raw little-endian, so a
# memory map gives every dtype (bfloat16 included, which numpy lacks) lazily.

def _dtypes():
  import ml_dtypes
  return {'F64': np.float64, 'F32': np.float32, 'F16': np.float16,
          'BF16': ml_dtypes.bfloat16, 'I64': np.int64, 'I32': np.int32,
          'I16': np.int16, 'I8': np.int8, 'U8': np.uint8, 'BOOL': np.bool_}


class _Safetensors:

  def __init__(self, path: str):
    self.path = path
    try:
      with open(path, 'rb') as f:
        (n,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as e:
      raise ConvertError(f'{path} is not a readable safetensors file '
                         f'({type(e).__name__}): re-save the model') from None
    header.pop('__metadata__', None)
    self.offset = 8 + n
    self.header = header
    self._map = None

  def names(self):
    return list(self.header)

  def shape(self, name):
    return tuple(self.header[name]['shape'])

  def get(self, name) -> np.ndarray:
    if self._map is None:
      self._map = np.memmap(self.path, np.uint8, mode='r')
    info = self.header[name]
    dtype = np.dtype(_dtypes()[info['dtype']])
    begin, end = info['data_offsets']
    raw = self._map[self.offset + begin:self.offset + end]
    return raw.view(dtype).reshape(info['shape'])


class _TorchBin:

  def __init__(self, path: str):
    try:
      import torch
    except ImportError:
      raise ConvertError(f'{path} is a PyTorch pickle and reading it needs torch: '
                         f'pip install torch, or re-save the model as safetensors') from None
    try:
      self.state = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as e:
      raise ConvertError(f'cannot read {path}: {type(e).__name__}: '
                         f'{str(e).splitlines()[0]}') from None

  def names(self):
    return list(self.state)

  def shape(self, name):
    return tuple(self.state[name].shape)

  def get(self, name) -> np.ndarray:
    import torch
    t = self.state[name]
    if t.dtype == torch.bfloat16:
      t = t.float()
    return t.numpy()


class Tensors:
  """Name -> tensor over one or several weight files, read lazily."""

  def __init__(self, directory: str):
    files = set(os.listdir(directory))
    self.files = []
    if 'model.safetensors' in files:
      self.files = [_Safetensors(os.path.join(directory, 'model.safetensors'))]
    elif 'model.safetensors.index.json' in files:
      self.files = [_Safetensors(os.path.join(directory, f))
                    for f in self._shards(directory, 'model.safetensors.index.json')]
    elif 'pytorch_model.bin' in files:
      self.files = [_TorchBin(os.path.join(directory, 'pytorch_model.bin'))]
    elif 'pytorch_model.bin.index.json' in files:
      self.files = [_TorchBin(os.path.join(directory, f))
                    for f in self._shards(directory, 'pytorch_model.bin.index.json')]
    else:
      raise ConvertError(f'{directory} has no weights (none of {", ".join(WEIGHT_FILES)})'
                         f': save the model with save_pretrained')
    self.where = {}
    for f in self.files:
      for name in f.names():
        self.where[name] = f

  @staticmethod
  def _shards(directory: str, index_name: str) -> list[str]:
    index_path = os.path.join(directory, index_name)
    try:
      with open(index_path) as f:
        weight_map = json.load(f)['weight_map']
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise ConvertError(f'cannot read the shard index {index_path} '
                         f'({type(e).__name__}): re-save the model') from None
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not os.path.isfile(os.path.join(directory, s))]
    if missing:
      raise ConvertError(f'{index_path} lists shard(s) that are missing: '
                         f'{", ".join(missing)}')
    return shards

  def names(self):
    return list(self.where)

  def shape(self, name):
    return self.where[name].shape(name)

  def get(self, name) -> np.ndarray:
    return self.where[name].get(name)
