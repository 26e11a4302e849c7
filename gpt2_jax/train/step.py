"""The pure train and eval steps, the train state, and the shardings that `jax.jit` places them
with. Gradient accumulation is a `lax.scan` over microbatches inside one step, so every step is
exactly one optimizer update and the loop never sees microbatches."""
from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from gpt2_jax.config import GPT2Config
from gpt2_jax.loss import loss_fn
from gpt2_jax.model import init_params, param_shapes, param_shardings
from gpt2_jax.sharding import Layout, constrain

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class TrainState(flax.struct.PyTreeNode):
    """Everything a step changes: update count, fp32 params, optimizer state."""

    step: jax.Array
    params: Any
    opt_state: Any


def init_state(model_cfg: GPT2Config, optimizer: optax.GradientTransformation, key: jax.Array) -> TrainState:
    """A fresh state at step 0 (jit this with `state_shardings` as out_shardings)."""
    params = init_params(model_cfg, key)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))


def abstract_state(model_cfg: GPT2Config, optimizer: optax.GradientTransformation) -> TrainState:
    """The state as ShapeDtypeStructs, without allocating anything."""
    params = param_shapes(model_cfg)
    return TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params,
                      opt_state=jax.eval_shape(optimizer.init, params))


def state_shardings(model_cfg: GPT2Config, optimizer: optax.GradientTransformation, layout: Layout) -> TrainState:
    """NamedShardings for every state leaf: params by the rules table, each optimizer moment like
    its parameter (so FSDP shards Adam's mu/nu too), scalars (counts, step) replicated."""
    p_sh = param_shardings(model_cfg, layout)
    replicated = layout.replicated
    abstract = abstract_state(model_cfg, optimizer)
    opt_sh = optax.tree_map_params(optimizer, lambda _, s: s, abstract.opt_state, p_sh,
                                   transform_non_params=lambda _: replicated,
                                   is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))
    return TrainState(step=replicated, params=p_sh, opt_state=opt_sh)


def with_shardings(abstract: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying the target shardings (for restore and AOT lowering)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def _microbatches(batch: Batch, n: int, layout: Layout | None = None) -> Batch:
    """[B, ...] -> [n, B/n, ...] taking rows i, i+n, i+2n, ... for microbatch i, so every device
    keeps its own rows (a contiguous split would move rows between data-parallel shards)."""
    def split(x):
        x = x.reshape(x.shape[0] // n, n, *x.shape[1:]).swapaxes(0, 1)
        return constrain(x, (None, "activation_batch") + (None,) * (x.ndim - 2), layout)
    return jax.tree.map(split, batch)


def make_train_step(model_cfg: GPT2Config, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, *, grad_accum_steps: int = 1, seed: int = 0,
                    layout: Layout | None = None) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """train_step(state, batch) -> (state, metrics): the mean token loss of the whole batch (over
    `grad_accum_steps` microbatches), one clipped AdamW update. Pure: dropout keys derive from
    (seed, state.step), so a resumed run draws the same ones. `layout` shards activations."""
    use_dropout = model_cfg.dropout > 0

    def nll_sum(params, micro, key):
        loss, m = loss_fn(params, micro, model_cfg, rng=key if use_dropout else None, layout=layout)
        return loss * m["tokens"], m["tokens"]

    grad_fn = jax.value_and_grad(nll_sum, has_aux=True)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        key = jax.random.fold_in(jax.random.key(seed), state.step)
        if grad_accum_steps == 1:
            (total_nll, tokens), grads = grad_fn(state.params, batch, key)
        else:
            def accumulate(carry, xs):
                i, micro = xs
                (nll, n), g = grad_fn(state.params, micro, jax.random.fold_in(key, i))
                g_acc, nll_acc, n_acc = carry
                return (jax.tree.map(jnp.add, g_acc, g), nll_acc + nll, n_acc + n), None

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            xs = (jnp.arange(grad_accum_steps), _microbatches(batch, grad_accum_steps, layout))
            (grads, total_nll, tokens), _ = jax.lax.scan(
                accumulate, (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)), xs)
        denom = jnp.maximum(tokens, 1.0)
        grads = jax.tree.map(lambda g: g / denom, grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": total_nll / denom, "grad_norm": optax.tree.norm(grads),
                   "learning_rate": schedule(state.step), "tokens": tokens,
                   "param_norm": optax.tree.norm(params)}
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return train_step


def make_eval_step(model_cfg: GPT2Config, layout: Layout | None = None) -> Callable[[Any, Batch], Metrics]:
    """eval_step(params, batch) -> {"nll_sum", "tokens"} (fp32; padding rows have weight 0)."""
    cfg = model_cfg.replace(dtype="float32")  # evals in fp32 (house style)

    def eval_step(params, batch: Batch) -> Metrics:
        loss, m = loss_fn(params, batch, cfg, layout=layout)
        return {"nll_sum": loss * m["tokens"], "tokens": m["tokens"]}

    return eval_step


def jit_train_step(train_step, state_sh: TrainState, batch_sh: NamedSharding):
    """jax.jit with explicit in/out shardings; the input state is donated (updated in place)."""
    replicated = NamedSharding(batch_sh.mesh, P())
    return jax.jit(train_step, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, replicated),
                   donate_argnums=(0,))


def jit_eval_step(eval_step, params_sh: Any, batch_sh: NamedSharding):
    replicated = NamedSharding(batch_sh.mesh, P())
    return jax.jit(eval_step, in_shardings=(params_sh, batch_sh), out_shardings=replicated)
