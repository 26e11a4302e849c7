"""Attention kernels, chosen per backend. All take q_BTHK, k_BSHK, v_BSHK and return o_BTHK.

- `reference`: plain einsum + masked softmax in fp32; the definition the others are tested against,
  and the path for explicit masks (padding, KV cache) and attention-probability dropout.
- `blocked`: causal attention in query blocks with an online softmax over key blocks; key blocks
  entirely above the diagonal are never computed (CPU default: ~half the work of a dense mask).
- `xla` / `cudnn`: `jax.nn.dot_product_attention` (cuDNN's fused kernel on GPU).
- `splash`: Pallas splash attention on TPU (head_dim padded to a multiple of 128).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from gpt2_jax.errors import ConfigError

NEG_INF = -1e30  # finite, so fully-masked rows give zeros instead of NaN


def resolve(impl: str, backend: str | None = None) -> str:
    """The concrete kernel for `impl` on `backend` ('auto' picks the fastest measured one)."""
    backend = backend or jax.default_backend()
    if impl != "auto":
        return impl
    if backend == "gpu":
        return "cudnn"
    if backend == "tpu":
        return "splash"
    return "blocked"


def reference_attention(q_BTHK, k_BSHK, v_BSHK, mask_BTS=None, *, causal=True,
                        dropout_rate=0.0, dropout_rng=None):
    """Dense softmax attention in fp32. `mask_BTS` (bool, True = attend) overrides `causal`."""
    scale = 1.0 / math.sqrt(q_BTHK.shape[-1])
    s_BHTS = jnp.einsum("bthk,bshk->bhts", q_BTHK, k_BSHK,
                        preferred_element_type=jnp.float32) * scale
    if mask_BTS is None and causal:
        t, s = q_BTHK.shape[1], k_BSHK.shape[1]
        mask_BTS = (jnp.arange(t)[:, None] + (s - t) >= jnp.arange(s)[None, :])[None]
    if mask_BTS is not None:
        s_BHTS = jnp.where(mask_BTS[:, None], s_BHTS, NEG_INF)
    p_BHTS = jax.nn.softmax(s_BHTS, axis=-1)
    if mask_BTS is not None:  # rows with no valid key (left padding) attend to nothing
        p_BHTS = jnp.where(mask_BTS[:, None], p_BHTS, 0.0)
    if dropout_rate > 0.0 and dropout_rng is not None:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, p_BHTS.shape)
        p_BHTS = jnp.where(keep, p_BHTS / (1.0 - dropout_rate), 0.0)
    o_BTHK = jnp.einsum("bhts,bshk->bthk", p_BHTS.astype(v_BSHK.dtype), v_BSHK,
                        preferred_element_type=jnp.float32)
    return o_BTHK.astype(q_BTHK.dtype)


def blocked_causal_attention(q_BTHK, k_BTHK, v_BTHK, *, block_size=128):
    """Causal self-attention by query blocks; each query block runs an online softmax over the
    key blocks at or below the diagonal only, so masked blocks cost nothing."""
    b, t, h, d = q_BTHK.shape
    blk = min(block_size, t)
    pad = (-t) % blk
    if pad:  # padded keys sit after every real query, so the causal mask hides them
        q_BTHK, k_BTHK, v_BTHK = (jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0)))
                                  for x in (q_BTHK, k_BTHK, v_BTHK))
    n = (t + pad) // blk
    scale = 1.0 / math.sqrt(d)
    q_BTHK = q_BTHK * jnp.asarray(scale, q_BTHK.dtype)
    diag_mask = jnp.tril(jnp.ones((blk, blk), bool))
    outs = []
    for i in range(n):
        q_BQHK = q_BTHK[:, i * blk:(i + 1) * blk]
        m_BHQ = jnp.full((b, h, blk), NEG_INF, jnp.float32)
        l_BHQ = jnp.zeros((b, h, blk), jnp.float32)
        acc_BQHK = jnp.zeros((b, blk, h, d), jnp.float32)
        for j in range(i + 1):
            k_BKHK = k_BTHK[:, j * blk:(j + 1) * blk]
            v_BKHK = v_BTHK[:, j * blk:(j + 1) * blk]
            s_BHQK = jnp.einsum("bqhd,bkhd->bhqk", q_BQHK, k_BKHK,
                                preferred_element_type=jnp.float32)
            if j == i:
                s_BHQK = jnp.where(diag_mask, s_BHQK, NEG_INF)
            m_new = jnp.maximum(m_BHQ, s_BHQK.max(-1))
            p_BHQK = jnp.exp(s_BHQK - m_new[..., None])
            corr_BHQ = jnp.exp(m_BHQ - m_new)
            l_BHQ = l_BHQ * corr_BHQ + p_BHQK.sum(-1)
            pv_BQHK = jnp.einsum("bhqk,bkhd->bqhd", p_BHQK.astype(v_BKHK.dtype), v_BKHK,
                                 preferred_element_type=jnp.float32)
            acc_BQHK = acc_BQHK * jnp.swapaxes(corr_BHQ, 1, 2)[..., None] + pv_BQHK
            m_BHQ = m_new
        outs.append(acc_BQHK / jnp.swapaxes(l_BHQ, 1, 2)[..., None])
    o_BTHK = jnp.concatenate(outs, axis=1)[:, :t]
    return o_BTHK.astype(q_BTHK.dtype)


def xla_attention(q_BTHK, k_BTHK, v_BTHK, *, implementation=None):
    """`jax.nn.dot_product_attention` (XLA everywhere; cuDNN flash attention on GPU)."""
    return jax.nn.dot_product_attention(q_BTHK, k_BTHK, v_BTHK, is_causal=True,
                                        implementation=implementation)


@functools.lru_cache(maxsize=None)
def _splash_kernel(t: int, n_head: int, block: int):
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as sk, splash_attention_mask as sm)
    mask = sm.MultiHeadMask([sm.CausalMask((t, t)) for _ in range(n_head)])
    sizes = sk.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                          block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                          block_q_dq=block, block_kv_dq=block)
    return sk.make_splash_mha(mask, head_shards=1, q_seq_shards=1, block_sizes=sizes)


def splash_attention(q_BTHK, k_BTHK, v_BTHK, *, block_size=512):
    """Pallas splash attention (TPU only). GPT-2's head_dim 64 is zero-padded to 128 lanes; the
    softmax scale is applied to q first so the padding does not change it."""
    b, t, h, d = q_BTHK.shape
    dp = -(-d // 128) * 128
    q_BTHK = q_BTHK / jnp.asarray(math.sqrt(d), q_BTHK.dtype)
    to_bhtk = lambda x: jnp.pad(jnp.swapaxes(x, 1, 2), ((0, 0), (0, 0), (0, 0), (0, dp - d)))
    kernel = _splash_kernel(t, h, min(block_size, t))
    o_BHTK = jax.vmap(kernel)(to_bhtk(q_BTHK), to_bhtk(k_BTHK), to_bhtk(v_BTHK))
    return jnp.swapaxes(o_BHTK[..., :d], 1, 2)


def causal_attention(q_BTHK, k_BTHK, v_BTHK, *, impl="auto", block_size=128):
    """Causal self-attention with the kernel `impl` ('auto' resolves per backend)."""
    impl = resolve(impl)
    if impl == "reference":
        return reference_attention(q_BTHK, k_BTHK, v_BTHK)
    if impl == "blocked":
        return blocked_causal_attention(q_BTHK, k_BTHK, v_BTHK, block_size=block_size)
    if impl == "xla":
        return xla_attention(q_BTHK, k_BTHK, v_BTHK, implementation="xla")
    if impl == "cudnn":
        if jax.default_backend() != "gpu":
            raise ConfigError("attention='cudnn' needs a GPU backend; use 'auto' or 'blocked'.")
        if q_BTHK.dtype == jnp.float32:  # cuDNN flash attention is fp16/bf16 only
            return xla_attention(q_BTHK, k_BTHK, v_BTHK, implementation="xla")
        return xla_attention(q_BTHK, k_BTHK, v_BTHK, implementation="cudnn")
    if impl == "splash":
        if jax.default_backend() != "tpu":
            raise ConfigError("attention='splash' needs a TPU backend; use 'auto' or 'blocked'.")
        return splash_attention(q_BTHK, k_BTHK, v_BTHK)
    raise ConfigError(f"unknown attention implementation {impl!r}.")
