"""Attention kernels, chosen per backend. All take q_BTHK, k_BSHK, v_BSHK and return o_BTHK.

- `reference`: plain einsum + masked softmax in fp32; the definition the others are tested against,
  and the path for explicit masks (padding, KV cache) and attention-probability dropout.
- `blocked` (CPU default): each query block against its whole visible key prefix at once (one
  plain softmax per block, key blocks above the diagonal never computed: ~half a dense mask's work);
  a custom VJP recomputes the probabilities from the saved row log-sum-exp instead of storing them.
- `online`: flash-style online softmax over (query block, key block) pairs below the diagonal;
  kept as the independent blocked reference (measured slower on CPU than `blocked`).
- `xla` / `cudnn`: `jax.nn.dot_product_attention` (cuDNN's fused kernel on GPU).
- `splash`: Pallas splash attention on TPU (head_dim padded to a multiple of 128).

Attention-probability dropout runs inside the blocked kernel (its mask regenerated from the key in
the backward pass); kernels without dropout hand such calls to it, saying so once. Kernels that run
per shard (splash) get the mesh and specs from the `Layout` they are passed.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from gpt2_jax.errors import ConfigError, log_once
from gpt2_jax.sharding import Layout

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
                        dropout_rate=0.0, dropout_rng=None, kv_layout="bshk"):
    """Dense softmax attention in fp32. `mask_BTS` (bool, True = attend) overrides `causal`.
    kv_layout="bhsk" takes k/v head-major [B, H, S, K], as a KV cache stores them: the layout the
    dots read without a transposed copy (one per tensor and decode step on CPU otherwise)."""
    scale = 1.0 / math.sqrt(q_BTHK.shape[-1])
    s_BHTS = jnp.einsum(f"bthk,{kv_layout}->bhts", q_BTHK, k_BSHK,
                        preferred_element_type=jnp.float32) * scale
    if mask_BTS is None and causal:
        t, s = q_BTHK.shape[1], k_BSHK.shape[kv_layout.index("s")]
        mask_BTS = (jnp.arange(t)[:, None] + (s - t) >= jnp.arange(s)[None, :])[None]
    if mask_BTS is not None:
        s_BHTS = jnp.where(mask_BTS[:, None], s_BHTS, NEG_INF)
    p_BHTS = jax.nn.softmax(s_BHTS, axis=-1)
    if mask_BTS is not None:  # rows with no valid key (left padding) attend to nothing
        p_BHTS = jnp.where(mask_BTS[:, None], p_BHTS, 0.0)
    if dropout_rate > 0.0 and dropout_rng is not None:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, p_BHTS.shape)
        p_BHTS = jnp.where(keep, p_BHTS / (1.0 - dropout_rate), 0.0)
    o_BTHK = jnp.einsum(f"bhts,{kv_layout}->bthk", p_BHTS.astype(v_BSHK.dtype), v_BSHK,
                        preferred_element_type=jnp.float32)
    return o_BTHK.astype(q_BTHK.dtype)


def online_causal_attention(q_BTHK, k_BTHK, v_BTHK, *, block_size=128):
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


def _query_blocks(t: int, blk: int) -> list[tuple[int, int]]:
    return [(a, min(a + blk, t)) for a in range(0, t, blk)]


def _keep_mask(key, rate: float, i: int, shape) -> jax.Array | None:
    """Dropout keep-mask of query block i (None without dropout): drawn from fold_in(key, i), so
    the backward pass regenerates exactly the forward's mask instead of storing it."""
    if not rate:
        return None
    return jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - rate, shape)


def _prefix_forward(q_BHTK, k_BHTK, v_BHTK, key, blk, rate):
    """Per query block [a, b): one dense softmax over its visible keys [0, b). q is pre-scaled.
    Returns o_BHTK (fp32, dropout applied to the probabilities) and the row log-sum-exp lse_BHT
    (of the undropped scores) that the backward pass recomputes the probabilities from."""
    outs, lses = [], []
    for i, (a, b) in enumerate(_query_blocks(q_BHTK.shape[2], blk)):
        s_BHQS = jnp.einsum("bhqd,bhsd->bhqs", q_BHTK[:, :, a:b], k_BHTK[:, :, :b],
                            preferred_element_type=jnp.float32)
        visible_QS = jnp.arange(a, b)[:, None] >= jnp.arange(b)[None, :]
        s_BHQS = jnp.where(visible_QS, s_BHQS, NEG_INF)
        m_BHQ1 = s_BHQS.max(-1, keepdims=True)
        p_BHQS = jnp.exp(s_BHQS - m_BHQ1)
        l_BHQ1 = p_BHQS.sum(-1, keepdims=True)
        keep_BHQS = _keep_mask(key, rate, i, s_BHQS.shape)
        if keep_BHQS is not None:
            p_BHQS = jnp.where(keep_BHQS, p_BHQS / (1.0 - rate), 0.0)
        o_BHQK = jnp.einsum("bhqs,bhsd->bhqd", p_BHQS.astype(v_BHTK.dtype), v_BHTK[:, :, :b],
                            preferred_element_type=jnp.float32)
        outs.append(o_BHQK / l_BHQ1)
        lses.append((m_BHQ1 + jnp.log(l_BHQ1))[..., 0])
    return jnp.concatenate(outs, axis=2), jnp.concatenate(lses, axis=2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _prefix_core(q_BHTK, k_BHTK, v_BHTK, key, blk, rate):
    return _prefix_forward(q_BHTK, k_BHTK, v_BHTK, key, blk, rate)[0].astype(q_BHTK.dtype)


def _prefix_core_fwd(q_BHTK, k_BHTK, v_BHTK, key, blk, rate):
    o_BHTK, lse_BHT = _prefix_forward(q_BHTK, k_BHTK, v_BHTK, key, blk, rate)
    o_BHTK = o_BHTK.astype(q_BHTK.dtype)
    return o_BHTK, (q_BHTK, k_BHTK, v_BHTK, key, o_BHTK, lse_BHT)


def _prefix_core_bwd(blk, rate, res, do_BHTK):
    """Flash-attention backward: recompute each block's probabilities from the saved log-sum-exp
    (and its dropout mask from the key) instead of storing them (O(T) residuals instead of O(T^2)).
    Scores are formed transposed (keys x queries) so every matmul contracts the operands' minor or
    leading dims the way XLA's fast CPU GEMM takes them (a dot contracting both operands' middle
    dim falls back to a slow one). With dropout P~ = P * keep / (1 - rate): dV = P~^T dO,
    dS = P * (dP~ * keep / (1 - rate) - rowsum(dO * O))."""
    q_BHTK, k_BHTK, v_BHTK, key, o_BHTK, lse_BHT = res
    f32, dt = jnp.float32, q_BHTK.dtype
    delta_BHT = (do_BHTK.astype(f32) * o_BHTK.astype(f32)).sum(-1)
    kT_BHKT = jnp.swapaxes(k_BHTK, 2, 3)
    dk_BHTK = jnp.zeros(k_BHTK.shape, f32)
    dv_BHTK = jnp.zeros(v_BHTK.shape, f32)
    dqTs = []
    for i, (a, b) in enumerate(_query_blocks(q_BHTK.shape[2], blk)):
        q_BHQK, do_BHQK = q_BHTK[:, :, a:b], do_BHTK[:, :, a:b]
        sT_BHSQ = jnp.einsum("bhsd,bhqd->bhsq", k_BHTK[:, :, :b], q_BHQK, preferred_element_type=f32)
        visible_SQ = jnp.arange(b)[:, None] <= jnp.arange(a, b)[None, :]
        pT_BHSQ = jnp.where(visible_SQ, jnp.exp(sT_BHSQ - lse_BHT[:, :, None, a:b]), 0.0)
        dpT_BHSQ = jnp.einsum("bhsd,bhqd->bhsq", v_BHTK[:, :, :b], do_BHQK, preferred_element_type=f32)
        pdT_BHSQ = pT_BHSQ  # the probabilities as the forward pass used them (dropped or not)
        keep_BHQS = _keep_mask(key, rate, i, (*q_BHQK.shape[:2], b - a, b))
        if keep_BHQS is not None:
            keepT_BHSQ = jnp.swapaxes(keep_BHQS, 2, 3)
            dpT_BHSQ = jnp.where(keepT_BHSQ, dpT_BHSQ / (1.0 - rate), 0.0)
            pdT_BHSQ = jnp.where(keepT_BHSQ, pT_BHSQ / (1.0 - rate), 0.0)
        dsT_BHSQ = (pT_BHSQ * (dpT_BHSQ - delta_BHT[:, :, None, a:b])).astype(dt)
        dqTs.append(jnp.einsum("bhds,bhsq->bhdq", kT_BHKT[:, :, :, :b], dsT_BHSQ, preferred_element_type=f32))
        dk_BHTK = dk_BHTK.at[:, :, :b].add(
            jnp.einsum("bhsq,bhqd->bhsd", dsT_BHSQ, q_BHQK, preferred_element_type=f32))
        dv_BHTK = dv_BHTK.at[:, :, :b].add(
            jnp.einsum("bhsq,bhqd->bhsd", pdT_BHSQ.astype(dt), do_BHQK, preferred_element_type=f32))
    dq_BHTK = jnp.swapaxes(jnp.concatenate(dqTs, axis=3), 2, 3)
    return dq_BHTK.astype(q_BHTK.dtype), dk_BHTK.astype(k_BHTK.dtype), dv_BHTK.astype(v_BHTK.dtype), None


_prefix_core.defvjp(_prefix_core_fwd, _prefix_core_bwd)


def blocked_causal_attention(q_BTHK, k_BTHK, v_BTHK, *, block_size=128, dropout_rate=0.0, dropout_rng=None):
    """Causal self-attention by query blocks, each against its whole visible key prefix at once
    (one plain softmax per block, no online rescaling; masked blocks skipped). The backward pass
    is a custom VJP that recomputes probabilities from the saved row log-sum-exp. With
    `dropout_rng`, attention probabilities are dropped at `dropout_rate` (scaled by 1/(1-rate))."""
    d = q_BTHK.shape[-1]
    rate = float(dropout_rate) if dropout_rng is not None else 0.0
    key = dropout_rng if rate else jax.random.key(0)
    to_bhtk = lambda x: jnp.swapaxes(x, 1, 2)  # noqa: E731
    q_BHTK = to_bhtk(q_BTHK * jnp.asarray(1.0 / math.sqrt(d), q_BTHK.dtype))
    o_BHTK = _prefix_core(q_BHTK, to_bhtk(k_BTHK), to_bhtk(v_BTHK), key, min(block_size, q_BTHK.shape[1]), rate)
    return to_bhtk(o_BHTK)


def xla_attention(q_BTHK, k_BTHK, v_BTHK, *, implementation=None):
    """`jax.nn.dot_product_attention` (XLA everywhere; cuDNN flash attention on GPU)."""
    return jax.nn.dot_product_attention(q_BTHK, k_BTHK, v_BTHK, is_causal=True,
                                        implementation=implementation)


def splash_block(t: int, block_size: int = 512) -> int | None:
    """The largest TPU-friendly block (a multiple of 128, at most `block_size`) dividing t; None if
    t is not a multiple of 128 (splash needs whole blocks: use `xla` for such lengths)."""
    for blk in range(min(block_size, t) // 128 * 128, 0, -128):
        if t % blk == 0:
            return blk
    return None


@functools.lru_cache(maxsize=None)
def _splash_kernel(t: int, n_head: int, block: int):
    """A causal multi-head splash kernel over [heads, T, head_dim] (jax.experimental.pallas.ops.tpu
    .splash_attention: make_splash_mha(mask, head_shards, q_seq_shards, block_sizes))."""
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as sk, splash_attention_mask as sm)
    mask = sm.MultiHeadMask([sm.CausalMask((t, t)) for _ in range(n_head)])
    sizes = sk.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                          block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                          block_q_dq=block, block_kv_dq=block)
    return sk.make_splash_mha(mask, head_shards=1, q_seq_shards=1, block_sizes=sizes)


_ACTIVATION_AXES = ("activation_batch", "activation_length", "activation_heads", "activation_kv")


def splash_attention(q_BTHK, k_BTHK, v_BTHK, *, block_size=512, layout: Layout | None = None):
    """Pallas splash attention (TPU only). GPT-2's head_dim 64 is zero-padded to 128 lanes (zero
    columns change no dot product); the softmax scale is applied to q first so the padding does not
    change it. With a layout, the kernel runs per (batch, heads) shard via shard_map."""
    b, t, h, d = q_BTHK.shape
    blk = splash_block(t, block_size)
    if blk is None:
        log_once(f"splash attention needs a sequence length that is a multiple of 128, got {t}: using "
                 "XLA's attention for it (pad sequences to a multiple of 128 to keep splash).")
        return xla_attention(q_BTHK, k_BTHK, v_BTHK)
    dp = -(-d // 128) * 128
    q_BTHK = q_BTHK * jnp.asarray(1.0 / math.sqrt(d), q_BTHK.dtype)

    def local(q_BTHK, k_BTHK, v_BTHK):
        to_bhtk = lambda x: jnp.pad(jnp.swapaxes(x, 1, 2), ((0, 0), (0, 0), (0, 0), (0, dp - d)))  # noqa: E731
        kernel = _splash_kernel(t, q_BTHK.shape[2], blk)
        o_BHTK = jax.vmap(kernel)(to_bhtk(q_BTHK), to_bhtk(k_BTHK), to_bhtk(v_BTHK))
        return jnp.swapaxes(o_BHTK[..., :d], 1, 2)

    if layout is None:
        return local(q_BTHK, k_BTHK, v_BTHK)
    spec = layout.spec(_ACTIVATION_AXES, q_BTHK.shape)
    return jax.shard_map(local, mesh=layout.mesh, in_specs=(spec, spec, spec), out_specs=spec,
                         check_vma=False)(q_BTHK, k_BTHK, v_BTHK)


def causal_attention(q_BTHK, k_BTHK, v_BTHK, *, impl="auto", block_size=128, layout: Layout | None = None,
                     dropout_rate: float = 0.0, dropout_rng=None):
    """Causal self-attention with the kernel `impl` ('auto' resolves per backend). With
    `dropout_rng` (training with dropout > 0) the probabilities are dropped: by the reference or
    the blocked kernel; the others have no dropout and hand such calls to `blocked`."""
    impl = resolve(impl)
    if impl == "cudnn" and jax.default_backend() != "gpu":
        raise ConfigError("attention='cudnn' needs a GPU backend; use 'auto' or 'blocked'.")
    if impl == "splash" and jax.default_backend() != "tpu":
        raise ConfigError("attention='splash' needs a TPU backend; use 'auto' or 'blocked'.")
    if impl not in ATTENTION_KERNELS:
        raise ConfigError(f"unknown attention implementation {impl!r}.")
    dropout = dropout_rng is not None and dropout_rate > 0
    if impl == "reference":
        return reference_attention(q_BTHK, k_BTHK, v_BTHK, dropout_rate=dropout_rate if dropout else 0.0,
                                   dropout_rng=dropout_rng)
    if dropout and impl != "blocked":
        log_once(f"attention={impl!r} has no attention dropout: training with dropout={dropout_rate} runs the "
                 "blocked kernel instead (on TPU/GPU slower than a fused kernel; set model dropout=0 to keep "
                 f"{impl!r}).")
        impl = "blocked"
    if impl == "blocked":
        return blocked_causal_attention(q_BTHK, k_BTHK, v_BTHK, block_size=block_size,
                                        dropout_rate=dropout_rate, dropout_rng=dropout_rng if dropout else None)
    if impl == "online":
        return online_causal_attention(q_BTHK, k_BTHK, v_BTHK, block_size=block_size)
    if impl == "xla":
        return xla_attention(q_BTHK, k_BTHK, v_BTHK, implementation="xla")
    if impl == "cudnn":
        if q_BTHK.dtype == jnp.float32:  # cuDNN flash attention is fp16/bf16 only
            log_once("attention='cudnn' runs in fp16/bf16 only: fp32 attention uses XLA's kernel "
                     "(set dtype='bfloat16' for cuDNN).")
            return xla_attention(q_BTHK, k_BTHK, v_BTHK, implementation="xla")
        return xla_attention(q_BTHK, k_BTHK, v_BTHK, implementation="cudnn")
    return splash_attention(q_BTHK, k_BTHK, v_BTHK, layout=layout)


ATTENTION_KERNELS = ("reference", "blocked", "online", "xla", "cudnn", "splash")
