"""GPT-2 (Radford et al. 2019) as pure functional Flax: `init_params` returns a plain pytree and
`forward(params, tokens, cfg)` is a pure function.

The paper's model is GPT-1's decoder with LayerNorm moved to each block's input, a final
LayerNorm, residual projections initialised at 0.02/sqrt(2 L), learned positions and the output
layer tied to the token embedding. Parameter names follow OpenAI/HF (wte, wpe, h, ln_1,
attn/c_attn, attn/c_proj, ln_2, mlp/c_fc, mlp/c_proj, ln_f). The blocks' parameters are stacked on
a leading `layers` axis under `h` (scanned or unrolled, one checkpoint layout); c_attn is stored
[embed, 3, heads, kv] so tensor parallelism splits heads, never q/k/v. Every parameter names its
logical axes; with a `sharding.Layout`, activations are constrained at block boundaries.
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gpt2_jax import attention
from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import InputError
from gpt2_jax.layers import Dense, LayerNorm
from gpt2_jax.sharding import Layout, constrain

Params = dict[str, Any]
_ACT = ("activation_batch", "activation_length", "activation_embed")


class Attention(nn.Module):
    """Causal multi-head self-attention. `mask_BTS` (True = attend) replaces the causal mask;
    `cache` = (k_BHSK, v_BHSK, index) writes this call's keys/values at slot `index` of a KV cache
    and attends over all its slots (under `mask_BTS`); the updated (k, v) is returned."""
    cfg: GPT2Config
    deterministic: bool = True
    layout: Layout | None = None

    @nn.compact
    def __call__(self, x_BTD, mask_BTS=None, cache=None):
        c, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        qkv_BT3HK = Dense((c.n_embd,), (3, c.n_head, c.head_dim), ("embed", "qkv", "heads", "kv"),
                          c.initializer_range, dt, name="c_attn")(x_BTD)
        q_BTHK, k_BTHK, v_BTHK = (qkv_BT3HK[:, :, i] for i in range(3))
        rng = None if self.deterministic or c.dropout == 0 else self.make_rng("dropout")
        new_cache = None
        if cache is not None:  # the cache is head-major [B, H, S, K]: the dots read it without a copy
            k_BHSK, v_BHSK, index = cache
            write = lambda c_BHSK, x_BTHK: jax.lax.dynamic_update_slice_in_dim(  # noqa: E731
                c_BHSK, x_BTHK.transpose(0, 2, 1, 3).astype(c_BHSK.dtype), index, axis=2)
            new_cache = (write(k_BHSK, k_BTHK), write(v_BHSK, v_BTHK))
            o_BTHK = attention.reference_attention(q_BTHK, new_cache[0].astype(dt), new_cache[1].astype(dt),
                                                   mask_BTS, kv_layout="bhsk")
        elif mask_BTS is not None:
            o_BTHK = attention.reference_attention(q_BTHK, k_BTHK, v_BTHK, mask_BTS, dropout_rate=c.dropout,
                                                   dropout_rng=rng)
        else:
            o_BTHK = attention.causal_attention(q_BTHK, k_BTHK, v_BTHK, impl=c.attention,
                                                block_size=c.attn_block_size, layout=self.layout,
                                                dropout_rate=c.dropout, dropout_rng=rng)
        o_BTHK = constrain(o_BTHK, ("activation_batch", "activation_length", "activation_heads",
                                    "activation_kv"), self.layout)
        y_BTD = Dense((c.n_head, c.head_dim), (c.n_embd,), ("heads", "kv", "embed"),
                      c.initializer_range / math.sqrt(2 * c.n_layer), dt, name="c_proj")(o_BTHK)
        return y_BTD, new_cache


class MLP(nn.Module):
    """Two layers with a tanh-approximated GELU between them, 4x wide."""
    cfg: GPT2Config
    layout: Layout | None = None

    @nn.compact
    def __call__(self, x_BTD):
        c, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        h_BTF = Dense((c.n_embd,), (c.mlp_dim,), ("embed", "mlp"), c.initializer_range, dt, name="c_fc")(x_BTD)
        h_BTF = constrain(jax.nn.gelu(h_BTF, approximate=True),
                          ("activation_batch", "activation_length", "activation_mlp"), self.layout)
        return Dense((c.mlp_dim,), (c.n_embd,), ("mlp", "embed"), c.initializer_range / math.sqrt(2 * c.n_layer),
                     dt, name="c_proj")(h_BTF)


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)); x + mlp(ln_2(x)). Returns (x, new_cache)."""
    cfg: GPT2Config
    deterministic: bool = True
    layout: Layout | None = None

    @nn.compact
    def __call__(self, x_BTD, mask_BTS=None, cache=None):
        c = self.cfg
        drop = nn.Dropout(c.dropout, deterministic=self.deterministic)
        a_BTD, new_cache = Attention(c, self.deterministic, self.layout, name="attn")(
            LayerNorm(c.layer_norm_epsilon, name="ln_1")(x_BTD), mask_BTS, cache)
        x_BTD = x_BTD + drop(a_BTD).astype(x_BTD.dtype)
        m_BTD = MLP(c, self.layout, name="mlp")(LayerNorm(c.layer_norm_epsilon, name="ln_2")(x_BTD))
        x_BTD = x_BTD + drop(m_BTD).astype(x_BTD.dtype)
        return constrain(x_BTD, _ACT, self.layout), new_cache


_REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_with_no_batch_dims": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


class GPT2(nn.Module):
    """Embeddings, n_layer blocks (scanned over the stacked `h`), final LayerNorm, tied head."""
    cfg: GPT2Config
    deterministic: bool = True
    layout: Layout | None = None

    @nn.compact
    def __call__(self, tokens_BT, positions_BT, mask_BTS=None, return_hidden=False):
        """Logits float32 [B, T, V]; with `return_hidden`, the final hidden states (after ln_f)
        instead, so callers that need few positions skip the [B, T, V] head."""
        c = self.cfg
        init = nn.initializers.normal(stddev=c.initializer_range)
        wte = self.param("wte", nn.with_logical_partitioning(init, ("vocab", "embed")), (c.vocab_size, c.n_embd))
        wpe = self.param("wpe", nn.with_logical_partitioning(init, ("positions", "embed")), (c.n_positions, c.n_embd))
        x_BTD = nn.Dropout(c.dropout, deterministic=self.deterministic)(embed({"wte": wte, "wpe": wpe},
                                                                              tokens_BT, positions_BT))
        x_BTD = constrain(x_BTD, _ACT, self.layout)
        block = Block
        if c.remat != "none":
            block = nn.remat(Block, policy=_REMAT_POLICIES[c.remat], prevent_cse=not c.scan_layers)
        stack = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                        in_axes=(nn.broadcast, nn.broadcast), length=c.n_layer,
                        unroll=1 if c.scan_layers else c.n_layer, metadata_params={nn.PARTITION_NAME: "layers"})
        x_BTD, _ = stack(c, self.deterministic, self.layout, name="h")(x_BTD, mask_BTS, None)
        h_BTD = LayerNorm(c.layer_norm_epsilon, name="ln_f")(x_BTD)
        if return_hidden:
            return h_BTD
        return constrain(lm_head({"wte": wte}, h_BTD, c),
                         ("activation_batch", "activation_length", "activation_vocab"), self.layout)


def embed(params: Params, tokens_BT: jax.Array, positions_BT: jax.Array) -> jax.Array:
    """Token plus position embeddings [B, T, D] (fp32)."""
    return jnp.take(params["wte"], tokens_BT, axis=0) + jnp.take(params["wpe"], positions_BT, axis=0)


def lm_head(params: Params, h_BTD: jax.Array, cfg: GPT2Config) -> jax.Array:
    """The tied output layer: logits float32 [..., vocab] from final hidden states [..., D]."""
    return jnp.einsum("...d,vd->...v", h_BTD.astype(cfg.dtype), params["wte"].astype(cfg.dtype),
                      preferred_element_type=jnp.float32)


def _abstract_boxed(cfg: GPT2Config):
    tokens = jnp.zeros((1, 1), jnp.int32)
    return jax.eval_shape(lambda: GPT2(cfg).init(jax.random.key(0), tokens, tokens))["params"]


def init_params(cfg: GPT2Config, key: jax.Array) -> Params:
    """Fresh GPT-2 parameters (fp32): N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)),
    zero biases, unit LayerNorm scales. Returns a plain nested dict of arrays."""
    tokens = jnp.zeros((1, 1), jnp.int32)
    boxed = jax.jit(lambda k: GPT2(cfg).init(k, tokens, tokens)["params"])(key)
    return nn.meta.unbox(boxed)


def param_shapes(cfg: GPT2Config) -> Params:
    """The parameter pytree as `jax.ShapeDtypeStruct`s, without allocating anything."""
    return nn.meta.unbox(_abstract_boxed(cfg))


def param_logical_axes(cfg: GPT2Config) -> Params:
    """A pytree like the params whose leaves are `PartitionSpec`s of logical axis names."""
    return nn.get_partition_spec(_abstract_boxed(cfg))


def param_shardings(cfg: GPT2Config, layout: Layout) -> Params:
    """The NamedSharding of every parameter under the layout's rules."""
    return layout.shardings(param_logical_axes(cfg), param_shapes(cfg))


def count_params(params: Params) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))


def causal_positions(tokens_BT: jax.Array, cfg: GPT2Config) -> jax.Array:
    """Positions 0..T-1 for every row; InputError past the model's context."""
    b, t = tokens_BT.shape
    if t > cfg.n_positions:
        raise InputError(f"{t} tokens exceed the model's context of n_positions={cfg.n_positions}; "
                         f"pass at most {cfg.n_positions} tokens (slide a window over longer text).")
    return jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))


def forward(params: Params, tokens_BT: jax.Array, cfg: GPT2Config, *,
            positions_BT: jax.Array | None = None, mask_BTS: jax.Array | None = None,
            key_mask_BT: jax.Array | None = None, rng: jax.Array | None = None,
            return_hidden: bool = False, layout: Layout | None = None) -> jax.Array:
    """Logits float32 [B, T, vocab] for int tokens [B, T]. Pure and jit-able (cfg is static).

    `mask_BTS` (bool, True = token t may attend to token s) replaces the causal mask, e.g. for
    packed sequences with explicit `positions_BT`; `key_mask_BT` marks real tokens (False =
    padding, never attended to) under the causal mask; `rng` turns dropout on; `return_hidden`
    gives the final hidden states [B, T, D] instead (apply `lm_head` to a subset); `layout` shards
    activations by its rules (params are placed by the caller, e.g. `layout.put_params`).
    """
    if positions_BT is None:
        positions_BT = causal_positions(tokens_BT, cfg)
    if key_mask_BT is not None:
        t = tokens_BT.shape[1]
        causal_TS = jnp.tril(jnp.ones((t, t), bool))[None]
        mask_BTS = key_mask_BT[:, None, :] & (causal_TS if mask_BTS is None else mask_BTS)
    rngs = {"dropout": rng} if rng is not None else None
    return GPT2(cfg, deterministic=rng is None, layout=layout).apply(
        {"params": params}, tokens_BT, positions_BT, mask_BTS, return_hidden, rngs=rngs)
