"""The sequence-classification heads on the first token, as Hugging Face's:

- DistilBERT layout (no pooler in the encoder params): `pre_classifier` dense
  H->H, ReLU, dropout, `classifier` H->num_outputs
  (DistilBertForSequenceClassification);
- BERT layout (the encoder's `pooler/dense/{kernel,bias}` kept and fine-tuned):
  the pooler dense H->H with tanh, dropout, `classifier`
  (BertForSequenceClassification);
- RoBERTa family (`BertConfig.family`): dropout, `dense` H->H, tanh, dropout,
  `out_proj` H->num_outputs on `<s>` (RobertaClassificationHead).

Parameters are plain dicts named as HF's; `head_apply` tells the three apart
by their names.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistil.models import bert


def _normal(rng, shape, std):
  return std * jax.random.normal(rng, shape, jnp.float32)


def _linear(rng, cfg: bert.BertConfig, n_in: int, n_out: int) -> dict:
  return {'kernel': _normal(rng, (n_in, n_out), cfg.initializer_range),
          'bias': jnp.zeros((n_out,), jnp.float32)}


def init_head(cfg: bert.BertConfig, num_outputs: int, rng,
              pooler: dict | None = None) -> dict:
  """Head parameters for `cfg`'s layout; BERT's pooler is kept (and
  fine-tuned) when given. A model with token types (BERT's layout: it can only
  be written as `BertForSequenceClassification`) but no pooler, such as a
  `BertForMaskedLM`, gets a fresh pooler, as `transformers` gives it."""
  hidden = cfg.hidden_size
  k_pre, k_cls = jax.random.split(rng)
  if cfg.family in bert.ROBERTA_FAMILIES:
    return {'dense': _linear(k_pre, cfg, hidden, hidden),
            'out_proj': _linear(k_cls, cfg, hidden, num_outputs)}
  head = {'classifier': _linear(k_cls, cfg, hidden, num_outputs)}
  if pooler is None and cfg.type_vocab_size:
    head['pooler'] = {'dense': _linear(k_pre, cfg, hidden, hidden)}
  elif pooler is not None:
    head['pooler'] = {'dense': {k: jnp.asarray(pooler['dense'][k], jnp.float32)
                                for k in ('kernel', 'bias')}}
  else:
    head['pre_classifier'] = _linear(k_pre, cfg, hidden, hidden)
  return head


def _dense(p, x):
  return x @ p['kernel'] + p['bias']


def _dropout(x, rate: float, rng):
  if rng is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def head_apply(head: dict, first_token, rate: float, rng=None):
  """[B, H] first-token states -> [B, num_outputs] logits (float32)."""
  x = first_token.astype(jnp.float32)
  if 'out_proj' in head:                      # RoBERTa: dropout on both sides
    rng_in, rng_out = (None, None) if rng is None else jax.random.split(rng)
    x = jnp.tanh(_dense(head['dense'], _dropout(x, rate, rng_in)))
    return _dense(head['out_proj'], _dropout(x, rate, rng_out))
  if 'pooler' in head:
    x = jnp.tanh(_dense(head['pooler']['dense'], x))
  else:
    x = jax.nn.relu(_dense(head['pre_classifier'], x))
  return _dense(head['classifier'], _dropout(x, rate, rng))


def split_encoder_params(cfg: bert.BertConfig, params: dict):
  """(trained encoder params, untouched MLM head params, pooler or None).

  The MLM head (`cls`) is needed by `bert.apply` but not by the classifier, so
  it is neither trained nor given optimizer state (its computation is dead
  code under jit). A checkpoint without one gets zeros of the right shapes.
  """
  encoder = {k: v for k, v in params.items() if k not in ('cls', 'pooler')}
  if 'cls' in params:
    rest = {'cls': params['cls']}
  else:
    shapes = jax.eval_shape(lambda: bert.init(cfg, jax.random.key(0)))['cls']
    rest = {'cls': jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)}
  return encoder, rest, params.get('pooler')
