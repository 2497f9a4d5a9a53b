"""A train workdir's layout: the one place that names the files in it.

    WORKDIR/
      config.json              the whole config as run                 (describe)
      model.json               the student's and teacher's shapes      (describe)
      tokenizer/               the tokenizer that goes with the student (describe)
      checkpoints/STEP/state   orbax: the train state          (checkpoint.py)
      checkpoints/STEP/data    the input pipeline's position   (checkpoint.py)
      checkpoints_damaged/     unreadable checkpoints, set aside (checkpoint.py)
      metrics.jsonl            one JSON row per logged step    (metrics_writer)
      tensorboard/             the same, for TensorBoard       (metrics_writer)
      hf/                      the final student, a Hugging Face directory
      DONE                     the last step of a complete run (launch/babysit.sh)

`train` writes it through this module, and `convert.load_model` (so `convert
export`, GLUE and a teacher given as a workdir) reads it through this module;
`convert.export_student` writes hf/. Every path may be a URL (gs://...):
files go through `jaxdistil.fs`. It imports only what lies below it (`fs`,
the model config, the tokenizer's files), never `convert`.
"""

from __future__ import annotations

import dataclasses
import json
import os

from jaxdistil import fs
from jaxdistil.data.tokenizer import copy_tokenizer, has_tokenizer
from jaxdistil.models.config import default_layout

CONFIG = 'config.json'
MODEL = 'model.json'
TOKENIZER = 'tokenizer'
CHECKPOINTS = 'checkpoints'
STATE = 'state'                 # an item of each checkpoint
DATA = 'data'                   # the other item
DAMAGED = 'checkpoints_damaged'  # unreadable checkpoints are moved here
METRICS = 'metrics.jsonl'
TENSORBOARD = 'tensorboard'
HF = 'hf'
DONE = 'DONE'


def path(workdir: str, name: str, *more: str) -> str:
  return fs.join(workdir, name, *more)


def is_workdir(directory: str) -> bool:
  return fs.isfile(path(directory, MODEL))


def checkpoints(workdir: str) -> str:
  """WORKDIR/checkpoints: made absolute when local, a URL left as it is (orbax
  reads and writes gs:// itself; abspath would make gs://b/p /cwd/gs:/b/p)."""
  where = path(workdir, CHECKPOINTS)
  return where if fs.is_remote(where) else os.path.abspath(where)


def latest_step(workdir: str) -> int | None:
  """The newest complete checkpoint's step (one with its state), or None."""
  where = path(workdir, CHECKPOINTS)
  if not fs.isdir(where):
    return None
  steps = [int(d) for d in fs.listdir(where)
           if d.isdigit() and fs.isdir(fs.join(where, d, STATE))]
  return max(steps) if steps else None


def state_path(workdir: str, step: int) -> str:
  return path(workdir, CHECKPOINTS, str(step), STATE)


def describe(workdir: str, student, teacher, teacher_source: str,
             config_json: str, tokenizer_source: str | None) -> None:
  """What `convert export` and GLUE need to read this workdir's checkpoints:
  model.json (the student's and teacher's `BertConfig`), config.json (the
  whole run) and tokenizer/ (copied, so the workdir stands on its own). A
  rerun rewrites them (each file atomically)."""
  meta = {'student': dataclasses.asdict(student),
          'teacher': dataclasses.asdict(teacher),
          'teacher_source': teacher_source,
          # the HF layout it exports as (DistilBERT's, or RoBERTa's family)
          'layout': default_layout(student)}
  fs.makedirs(workdir)
  fs.write_text_atomic(path(workdir, MODEL), json.dumps(meta, indent=2))
  fs.write_text_atomic(path(workdir, CONFIG), config_json)
  copy_tokenizer(tokenizer_source, path(workdir, TOKENIZER))


def read_description(workdir: str) -> dict:
  """model.json as written by `describe` (ValueError/OSError when damaged)."""
  return json.loads(fs.read_text(path(workdir, MODEL)))


def tokenizer(workdir: str) -> str | None:
  """WORKDIR/tokenizer when it holds a tokenizer, else None."""
  folder = path(workdir, TOKENIZER)
  return folder if has_tokenizer(folder) else None


def mark_done(workdir: str, step: int) -> None:
  """The run is complete: launch/babysit.sh stops re-creating the TPU on this."""
  fs.write_text(path(workdir, DONE), f'{step}\n')


def is_done(workdir: str) -> bool:
  return fs.isfile(path(workdir, DONE))
