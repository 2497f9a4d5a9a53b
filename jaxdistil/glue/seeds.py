"""Results over seeds: the medians (`summarize`), the seed whose model is
kept (`median_seed`), and the stored seeds a top-up keeps (`stored_seeds`)."""

from __future__ import annotations

import json

import numpy as np

from jaxdistil.glue.tasks import GlueError, Task


def summarize(task: Task, per_seed: list[dict]) -> dict:
  """Median over seeds of each metric, and of the per-seed task score."""
  keys = task.metric_keys()
  return {'metrics': {k: float(np.median([r['metrics'][k] for r in per_seed]))
                      for k in keys},
          'score': float(np.median([r['score'] for r in per_seed]))}


def median_seed(per_seed: list[dict]) -> int:
  """The seed whose score is the median (the lower middle one of an even
  count; the first seed among equal scores)."""
  ranked = sorted(per_seed, key=lambda r: (r['score'], r['seed']))
  return int(ranked[(len(ranked) - 1) // 2]['seed'])


def stored_seeds(task: Task, previous: dict, settings: dict, seed: int) -> list:
  """The per-seed results of `previous` that a top-up keeps; refuses a result
  of another task, other settings or other seeds, naming what differs."""
  if previous.get('task') != task.name:
    raise GlueError(f'the stored result is for {previous.get("task")!r}, not '
                    f'{task.name}: it cannot be topped up with more seeds')
  as_json = lambda d: json.loads(json.dumps(d))
  was, now = as_json(previous.get('config', {})), as_json(settings)
  differ = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
  if differ:
    changes = ', '.join(f'{k} {was.get(k)!r} -> {now.get(k)!r}' for k in differ)
    raise GlueError(f'{task.name}: the stored seeds were run with other settings '
                    f'({changes}); top them up with the same settings, or remove '
                    f'the stored result to start over')
  kept = list(previous.get('per_seed', []))
  if [r.get('seed') for r in kept] != [seed + i for i in range(len(kept))]:
    raise GlueError(f'{task.name}: the stored seeds are '
                    f'{[r.get("seed") for r in kept]}, not {seed}, {seed + 1}, ...: '
                    f'top them up with the same --seed')
  return kept
