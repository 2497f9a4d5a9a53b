"""TinyBERT's stage 1 (intermediate layers) as a jitted, sharded step: the
student's hidden states (embeddings included) and attention scores learn
the teacher's, layer by layer, under `kd.uniform_layer_map`, before the
logits are taught (`glue.step`). The teacher runs inside the step (it travels
in `rest['teacher']`, as the online teacher of `glue.step`), on the
student's own tokens. A student narrower than its teacher maps its states
through one trained projection (`kd.init_projection`, TinyBERT's
`fit_dense`); the heads must match in number (`check_intermediate`, before
any data is read). The stage has its own peak rate (`kd_intermediate_lr`).
`intermediate_stage` runs it for one seed, before the seed's fine-tuning.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxdistil import optim, sharding
from jaxdistil.glue import kd
from jaxdistil.glue.config import FinetuneConfig
from jaxdistil.glue.step import TEACHER, Compiled, fit, param_shardings
from jaxdistil.glue.tasks import GlueError
from jaxdistil.models import bert


def intermediate_loss(cfg, teacher_cfg, layer_map, encoder, rest, batch, rng,
                      projection: dict | None = None):
  """kd.hidden_mse over every hidden state (embeddings included) plus
  kd.attention_mse over every student layer, each student state i matched
  with the teacher's layer_map[i] (`kd.uniform_layer_map`). A student
  narrower than its teacher maps its states through `projection`
  (`kd.init_projection`, trained with it)."""
  t = rest[TEACHER]
  mine = {k: v for k, v in rest.items() if k != TEACHER}
  args = (batch['input_ids'], batch['attention_mask'], batch['token_type_ids'])
  s_out = bert.apply(cfg, {**encoder, **mine}, *args, dropout_rng=rng)
  t_out = bert.apply(teacher_cfg, {**t['params']['encoder'], **t['rest']}, *args)
  hidden, _ = kd.hidden_mse(s_out.hidden_states, t_out.hidden_states,
                            batch['attention_mask'], layer_map,
                            projection=projection, weights=batch['weights'])
  s_scores = [kd.attention_scores(cfg, encoder, s_out.hidden_states[i - 1], i - 1)
              for i in range(1, len(layer_map))]
  t_scores = [kd.attention_scores(teacher_cfg, t['params']['encoder'],
                                  t_out.hidden_states[j - 1], j - 1)
              for j in layer_map[1:]]
  attention, _ = kd.attention_mse(s_scores, t_scores, batch['attention_mask'],
                                  batch['weights'])
  return hidden + attention


def intermediate_step(cfg, teacher_cfg, layer_map, tx, params, opt_state, rest,
                      batch, key, step):
  """One AdamW step of the intermediate stage on the encoder alone (`params`
  is {'encoder'}, and {'projection'} for a narrower student: the head is not
  touched, not even by weight decay)."""
  rng = jax.random.fold_in(key, step)
  loss, grads = jax.value_and_grad(
      lambda p: intermediate_loss(cfg, teacher_cfg, layer_map, p['encoder'],
                                  rest, batch, rng, p.get('projection')))(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


def compile_intermediate(bert_cfg, teacher_cfg, cfg: FinetuneConfig, template,
                         rest: dict, steps: int, mesh) -> Compiled:
  """`compile_steps` for the intermediate stage: params {'encoder'} and,
  when the student is narrower than the teacher, {'projection'}
  (`intermediate_params`); at the stage's own rate (`kd_intermediate_lr`)."""
  replicated = NamedSharding(mesh, P())
  tree = {'encoder': template['encoder']}
  p_sh = {'encoder': param_shardings(bert_cfg, dict(tree, head={}), mesh)['encoder']}
  if bert_cfg.hidden_size != teacher_cfg.hidden_size:
    tree['projection'] = jax.eval_shape(functools.partial(
        kd.init_projection, bert_cfg.hidden_size, teacher_cfg.hidden_size),
        jax.random.key(0))
    p_sh['projection'] = jax.tree.map(lambda _: replicated, tree['projection'])
  stage_cfg = dataclasses.replace(cfg, learning_rate=cfg.kd_intermediate_lr)
  tx = optim.make(stage_cfg.optim_config(), steps,
                  jax.tree.map(lambda _: False, tree))
  o_sh = sharding.shardings_like_params(jax.eval_shape(tx.init, tree), p_sh,
                                        tree, mesh)
  rest_sh = jax.tree.map(lambda _: replicated, rest)
  layer_map = kd.uniform_layer_map(bert_cfg.num_layers, teacher_cfg.num_layers)
  t_cfg = teacher_cfg.replace(hidden_dropout=0.0, attention_dropout=0.0)
  step = jax.jit(
      functools.partial(intermediate_step, bert_cfg, t_cfg, layer_map, tx),
      in_shardings=(p_sh, o_sh, rest_sh, sharding.batch_sharding(mesh),
                    replicated, replicated),
      out_shardings=(p_sh, o_sh, replicated), donate_argnums=(0, 1))
  return Compiled(step, None, jax.jit(tx.init, out_shardings=o_sh), p_sh, rest_sh)


def intermediate_params(bert_cfg, teacher_cfg, encoder: dict, key) -> dict:
  """The intermediate stage's trained tree: the student's encoder, and a
  fresh projection to the teacher's width when the two differ."""
  tree = {'encoder': encoder}
  if bert_cfg.hidden_size != teacher_cfg.hidden_size:
    tree['projection'] = kd.init_projection(bert_cfg.hidden_size,
                                            teacher_cfg.hidden_size, key)
  return tree


def intermediate_stage(stage1: Compiled, params, rest, arrays, cfg, key, seed,
                       mesh, progress: bool, name: str, models: tuple):
  """The encoder after `cfg.kd_intermediate_steps` steps of TinyBERT's
  stage 1 (the head as it was; a projection to a wider teacher is trained
  with it, then dropped). `models`: (student config, teacher config)."""
  from tqdm.auto import tqdm
  encoder = jax.device_put(
      intermediate_params(*models, jax.device_get(params['encoder']),
                          jax.random.fold_in(key, 2)), stage1.params)
  with tqdm(total=cfg.kd_intermediate_steps, desc=f'{name} seed {seed} stage 1',
            leave=False, disable=not progress, dynamic_ncols=True) as bar:
    encoder, _ = fit(stage1, encoder, stage1.init_opt(encoder), rest, arrays, cfg,
                     cfg.kd_intermediate_steps, key, seed, mesh, bar)
  return {'encoder': encoder['encoder'], 'head': params['head']}


def check_intermediate(bert_cfg, teacher_cfg) -> None:
  """One line, before any data is read, when TinyBERT's stage 1 cannot match
  the two models: attention scores need the same number of heads (widths
  may differ: a projection maps them)."""
  if bert_cfg.num_heads != teacher_cfg.num_heads:
    raise GlueError(f'--kd_intermediate_steps matches attention scores head by '
                    f'head, but the student has {bert_cfg.num_heads} heads and '
                    f'the teacher {teacher_cfg.num_heads}: give a student with '
                    f'{teacher_cfg.num_heads} heads, or drop the stage')
