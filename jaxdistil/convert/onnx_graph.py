"""A sequence classifier (our params) as an ONNX graph, built node by node.

No exporter traces anything: the graph is written from the parameters with
`onnx.helper`, one node per operation of `bert.apply` followed by
`glue.heads.head_apply`, so its logits equal ours (float32, the test holds
them to 1e-4 in ONNX Runtime). No PyTorch and no JAX trace are needed.

Inputs are named and typed as Hugging Face's ONNX exports name them
(`input_ids`, `attention_mask` and, for a model with token types,
`token_type_ids`: int64 [batch, sequence]); the output is `logits`
[batch, num_labels] float32. Each layer is written in the pattern ONNX
Runtime's graph optimizer recognises in BERT exports (the Q, K and V
projections, the mask as `(1 - mask) * min`, LayerNormalization, the erf
GELU), so that it fuses the layer into its `Attention`, `SkipLayerNormalization`
and `BiasGelu` kernels on load.
"""

from __future__ import annotations

import numpy as np

from jaxdistil.models.config import ROBERTA_FAMILIES, BertConfig

OPSET = 17                        # LayerNormalization is an ONNX op from 17
INPUTS = ('input_ids', 'attention_mask', 'token_type_ids')


class _Builder:
  """Nodes and initializers, each output named after its op and a counter."""

  def __init__(self):
    self.nodes, self.initializers, self._count = [], [], 0

  def const(self, name: str, value) -> str:
    from onnx import numpy_helper
    self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
    return name

  def op(self, kind: str, *inputs: str, name: str | None = None, **attrs) -> str:
    from onnx import helper
    self._count += 1
    out = name or f'{kind}_{self._count}'
    self.nodes.append(helper.make_node(kind, list(inputs), [out],
                                       name=f'{kind}_{self._count}', **attrs))
    return out

  def dense(self, x: str, prefix: str, kernel, bias) -> str:
    w = self.const(f'{prefix}.weight', np.asarray(kernel, np.float32))
    b = self.const(f'{prefix}.bias', np.asarray(bias, np.float32))
    return self.op('Add', self.op('MatMul', x, w), b)

  def layer_norm(self, x: str, prefix: str, p: dict, eps: float) -> str:
    scale = self.const(f'{prefix}.scale', np.asarray(p['scale'], np.float32))
    bias = self.const(f'{prefix}.bias', np.asarray(p['bias'], np.float32))
    return self.op('LayerNormalization', x, scale, bias, axis=-1, epsilon=eps)


def _activation(g: _Builder, x: str, name: str) -> str:
  """`bert.activation(name)` in ONNX ops (opset 17 has no Gelu)."""
  if name == 'relu':
    return g.op('Relu', x)
  half = g.const(f'half_{g._count}', np.float32(0.5))
  one = g.const(f'one_{g._count}', np.float32(1.0))
  if name == 'gelu':                 # x * 0.5 * (1 + erf(x / sqrt 2))
    inner = g.op('Erf', g.op('Div', x, g.const(f'sqrt2_{g._count}',
                                                np.float32(np.sqrt(2.0)))))
  else:                              # tanh(sqrt(2/pi) * (x + 0.044715 x^3))
    cube = g.op('Mul', g.op('Pow', x, g.const(f'three_{g._count}',
                                              np.float32(3.0))),
                g.const(f'c_{g._count}', np.float32(0.044715)))
    inner = g.op('Tanh', g.op('Mul', g.op('Add', x, cube), g.const(
        f'k_{g._count}', np.float32(np.sqrt(2.0 / np.pi)))))
  return g.op('Mul', g.op('Mul', x, half), g.op('Add', inner, one))


def _embeddings(g: _Builder, cfg: BertConfig, p: dict) -> str:
  """Word + position (+ token type) embeddings, then LayerNorm."""
  word = g.const('embeddings.word_embeddings',
                 np.asarray(p['word_embeddings']['embedding'], np.float32))
  pos_table = g.const('embeddings.position_embeddings',
                      np.asarray(p['position_embeddings']['embedding'], np.float32))
  length = g.op('Gather', g.op('Shape', 'input_ids'),
                g.const('axis_one', np.int64(1)), axis=0)
  positions = g.op('Range', g.const('zero_i64', np.int64(0)), length,
                   g.const('one_i64', np.int64(1)))
  if cfg.family in ROBERTA_FAMILIES:
    # As `bert.MaskedLM`: real tokens from pad + 1, padding at pad.
    positions = g.op('Where', g.op('Greater', 'attention_mask',
                                   g.const('zero_mask', np.int64(0))),
                     g.op('Add', positions, g.const(
                         'position_offset', np.int64(cfg.position_offset))),
                     g.const('pad_position', np.int64(cfg.pad_token_id)))
  x = g.op('Add', g.op('Gather', word, 'input_ids'),
           g.op('Gather', pos_table, positions))
  if cfg.type_vocab_size:
    types = g.const('embeddings.token_type_embeddings', np.asarray(
        p['token_type_embeddings']['embedding'], np.float32))
    x = g.op('Add', x, g.op('Gather', types, 'token_type_ids'))
  return g.layer_norm(x, 'embeddings.LayerNorm', p['LayerNorm'],
                      cfg.layer_norm_eps)


def _mask_bias(g: _Builder) -> str:
  """[B, 1, 1, L] float32: 0 at real keys, float32's min at padding."""
  mask = g.op('Unsqueeze', 'attention_mask', g.const('axis_1', np.array([1], np.int64)))
  mask = g.op('Unsqueeze', mask, g.const('axis_2', np.array([2], np.int64)))
  mask = g.op('Cast', mask, to=1)                               # FLOAT
  return g.op('Mul', g.op('Sub', g.const('one_f32', np.float32(1.0)), mask),
              g.const('mask_min', np.float32(np.finfo(np.float32).min)))


def _heads(g: _Builder, x: str, cfg: BertConfig, to_heads: str, perm) -> str:
  return g.op('Transpose', g.op('Reshape', x, to_heads), perm=perm)


def _layer(g: _Builder, cfg: BertConfig, i: int, p: dict, x: str,
           bias: str) -> str:
  pre = f'encoder.layer.{i}'
  hidden, heads, hd = cfg.hidden_size, cfg.num_heads, cfg.head_dim
  s = p['attention']['self']
  flat = lambda t: np.asarray(t, np.float32).reshape(hidden, hidden)
  q = g.dense(x, f'{pre}.query', flat(s['query']['kernel']),
              np.asarray(s['query']['bias'], np.float32).reshape(-1))
  k = g.dense(x, f'{pre}.key', flat(s['key']['kernel']),
              np.asarray(s['key']['bias'], np.float32).reshape(-1))
  v = g.dense(x, f'{pre}.value', flat(s['value']['kernel']),
              np.asarray(s['value']['bias'], np.float32).reshape(-1))
  to_heads = g.const(f'{pre}.to_heads', np.array([0, 0, heads, hd], np.int64))
  q = _heads(g, q, cfg, to_heads, [0, 2, 1, 3])                 # [B, h, L, d]
  k = _heads(g, k, cfg, to_heads, [0, 2, 3, 1])                 # [B, h, d, L]
  v = _heads(g, v, cfg, to_heads, [0, 2, 1, 3])
  scores = g.op('Mul', g.op('MatMul', q, k), g.const(
      f'{pre}.scale', np.float32(hd ** -0.5)))
  probs = g.op('Softmax', g.op('Add', scores, bias), axis=-1)
  ctx = g.op('Transpose', g.op('MatMul', probs, v), perm=[0, 2, 1, 3])
  ctx = g.op('Reshape', ctx, g.const(f'{pre}.to_hidden',
                                     np.array([0, 0, hidden], np.int64)))
  o = p['attention']['output']
  h = g.dense(ctx, f'{pre}.attention.output', np.asarray(
      o['dense']['kernel'], np.float32).reshape(hidden, hidden), o['dense']['bias'])
  x = g.layer_norm(g.op('Add', h, x), f'{pre}.attention.LayerNorm',
                   o['LayerNorm'], cfg.layer_norm_eps)
  h = g.dense(x, f'{pre}.intermediate', p['intermediate']['dense']['kernel'],
              p['intermediate']['dense']['bias'])
  h = _activation(g, h, cfg.hidden_act)
  h = g.dense(h, f'{pre}.output', p['output']['dense']['kernel'],
              p['output']['dense']['bias'])
  return g.layer_norm(g.op('Add', h, x), f'{pre}.output.LayerNorm',
                      p['output']['LayerNorm'], cfg.layer_norm_eps)


def _head(g: _Builder, head: dict, first: str) -> str:
  """`glue.heads.head_apply` without dropout."""
  lin = lambda x, name, q, out=None: g.op(
      'Add', g.op('MatMul', x, g.const(f'{name}.weight', np.asarray(
          q['kernel'], np.float32))),
      g.const(f'{name}.bias', np.asarray(q['bias'], np.float32)), name=out)
  if 'out_proj' in head:
    x = g.op('Tanh', lin(first, 'classifier.dense', head['dense']))
    return lin(x, 'classifier.out_proj', head['out_proj'], 'logits')
  if 'pooler' in head:
    x = g.op('Tanh', lin(first, 'pooler.dense', head['pooler']['dense']))
  else:
    x = g.op('Relu', lin(first, 'pre_classifier', head['pre_classifier']))
  return lin(x, 'classifier', head['classifier'], 'logits')


def build(cfg: BertConfig, params: dict, head: dict, name: str = 'jaxdistil'):
  """The classifier `cfg`, `params` (encoder, as `bert.init` names them; the
  MLM head and pooler are not read) and `head` as an `onnx.ModelProto`."""
  from onnx import TensorProto, helper
  g = _Builder()
  x = _embeddings(g, cfg, params['embeddings'])
  bias = _mask_bias(g)
  for i in range(cfg.num_layers):
    x = _layer(g, cfg, i, params['encoder'][f'layer_{i}'], x, bias)
  first = g.op('Gather', x, g.const('zero_index', np.int64(0)), axis=1)
  _head(g, head, first)
  names = INPUTS if cfg.type_vocab_size else INPUTS[:2]
  inputs = [helper.make_tensor_value_info(n, TensorProto.INT64,
                                          ['batch', 'sequence']) for n in names]
  outputs = [helper.make_tensor_value_info(
      'logits', TensorProto.FLOAT,
      ['batch', int(np.asarray(_final(head)['bias']).shape[0])])]
  graph = helper.make_graph(g.nodes, name, inputs, outputs, g.initializers)
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)],
                            producer_name='jaxdistil')
  model.ir_version = min(model.ir_version, 9)   # ONNX Runtimes of 2023 on
  return model


def _final(head: dict) -> dict:
  return head['out_proj'] if 'out_proj' in head else head['classifier']
