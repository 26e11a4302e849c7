"""The KV-cache runtime that sampling and greedy evaluation decode with: the weights in the form a
decode loop reads fastest (`DecodeParams`), the cache (`KVCache`) and `forward_cached`, which runs
new tokens against the cache. `model.forward` stays the definition; this is the same network
evaluated incrementally (tests check both agree).

Per-layer weights are a CPU choice: inside a decode loop XLA:CPU copies each layer's slice of the
stacked `h` every step, while separate arrays are read in place (~1.6x faster decoding). Other
backends scan over the stacked weights as the training forward does.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import InputError
from gpt2_jax.layers import LayerNorm
from gpt2_jax.model import Block, Params, embed, lm_head

LAYOUTS = ("per_layer", "stacked")


class DecodeParams(NamedTuple):
    """GPT-2's weights for decoding: `top` holds wte, wpe and ln_f; `layers` is a tuple of one
    block's params per layer ("per_layer") or the stacked `h` tree ("stacked")."""
    top: Params
    layers: tuple[Params, ...] | Params

    @property
    def stacked(self) -> bool:
        return not isinstance(self.layers, tuple)


class KVCache(NamedTuple):
    """Keys and values of every slot written so far: k/v are per-layer tuples of [B, H, S, K] or
    stacked [L, B, H, S, K] arrays (matching DecodeParams); `mask` [B, S] marks slots holding real
    tokens; `index` is the next slot to write."""
    k: tuple[jax.Array, ...] | jax.Array
    v: tuple[jax.Array, ...] | jax.Array
    mask: jax.Array
    index: jax.Array


def default_layout() -> str:
    return "per_layer" if jax.default_backend() == "cpu" else "stacked"


@jax.jit(static_argnames=("layout", "dtype"))
def _prepare(params: Params, layout: str, dtype: str | None) -> DecodeParams:
    top = {k: params[k] for k in ("wte", "wpe", "ln_f")}
    if dtype is not None:  # LayerNorm params stay fp32: they are tiny and feed fp32 statistics
        cast = lambda tree: jax.tree_util.tree_map_with_path(  # noqa: E731
            lambda path, x: x if "ln_" in jax.tree_util.keystr(path) else x.astype(dtype), tree)
        top, h = cast(top), cast(params["h"])
    else:
        h = params["h"]
    if layout == "stacked":
        return DecodeParams(top, h)
    n_layer = jax.tree.leaves(h)[0].shape[0]
    return DecodeParams(top, tuple(jax.tree.map(lambda x: x[i], h) for i in range(n_layer)))


def prepare(params: Params | DecodeParams, *, dtype: Any = None, layout: str | None = None) -> DecodeParams:
    """`params` in decode form (one jitted copy; DecodeParams pass through unchanged). `dtype`
    (e.g. bfloat16) stores the weights in that dtype (half the bytes read per token; compute stays
    in cfg.dtype). `layout` defaults per backend (per_layer on CPU, stacked elsewhere)."""
    if isinstance(params, DecodeParams):
        return params
    layout = layout or default_layout()
    if layout not in LAYOUTS:
        raise InputError(f"layout={layout!r} is not one of {LAYOUTS}.")
    return _prepare(params, layout, None if dtype is None else jnp.dtype(dtype).name)


def init_cache(cfg: GPT2Config, params: DecodeParams, batch_size: int, max_len: int, dtype: Any = None) -> KVCache:
    """An empty cache of `max_len` slots laid out like `params` (per-layer or stacked)."""
    dtype = jnp.dtype(dtype or cfg.dtype)
    shape = (batch_size, cfg.n_head, max_len, cfg.head_dim)
    if params.stacked:
        k, v = jnp.zeros((cfg.n_layer,) + shape, dtype), jnp.zeros((cfg.n_layer,) + shape, dtype)
    else:
        k = tuple(jnp.zeros(shape, dtype) for _ in range(cfg.n_layer))
        v = tuple(jnp.zeros(shape, dtype) for _ in range(cfg.n_layer))
    return KVCache(k, v, jnp.zeros((batch_size, max_len), bool), jnp.zeros((), jnp.int32))


def forward_cached(params: DecodeParams, tokens_BT: jax.Array, positions_BT: jax.Array, cache: KVCache,
                   cfg: GPT2Config, token_mask_BT: jax.Array | None = None,
                   return_hidden: bool = False) -> tuple[jax.Array, KVCache]:
    """Run T new tokens against the cache; returns their logits (or, with `return_hidden`, final
    hidden states) and the cache advanced by T slots.

    Slot order is time order (prompts are left-padded), so slot s is visible to the token in slot
    t iff s <= t and slot s holds a real token (`token_mask_BT` False marks padding)."""
    b, t = tokens_BT.shape
    s = cache.mask.shape[1]
    if token_mask_BT is None:
        token_mask_BT = jnp.ones((b, t), bool)
    mask_BS = jax.lax.dynamic_update_slice_in_dim(cache.mask, token_mask_BT, cache.index, axis=1)
    causal_TS = (cache.index + jnp.arange(t))[:, None] >= jnp.arange(s)[None, :]
    mask_BTS = mask_BS[:, None, :] & causal_TS[None]
    block = Block(cfg)
    x_BTD = embed(params.top, tokens_BT, positions_BT)

    def layer(x_BTD, p, k, v):
        x_BTD, (k, v) = block.apply({"params": p}, x_BTD, mask_BTS, (k, v, cache.index))
        return x_BTD, k, v

    if params.stacked:
        def body(x_BTD, xs):
            x_BTD, k, v = layer(x_BTD, *xs)
            return x_BTD, (k, v)
        x_BTD, (k, v) = jax.lax.scan(body, x_BTD, (params.layers, cache.k, cache.v))
    else:
        ks, vs = [], []
        for p, k, v in zip(params.layers, cache.k, cache.v):
            x_BTD, k, v = layer(x_BTD, p, k, v)
            ks.append(k), vs.append(v)
        k, v = tuple(ks), tuple(vs)
    h_BTD = LayerNorm(cfg.layer_norm_epsilon).apply({"params": params.top["ln_f"]}, x_BTD)
    out = h_BTD if return_hidden else lm_head(params.top, h_BTD, cfg)
    return out, KVCache(k, v, mask_BS, cache.index + t)
