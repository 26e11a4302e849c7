"""Losses and per-token scores against a direct float64 computation from the logits."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpt2_jax import loss, model
from gpt2_jax.config import GPT2Config


def _np_logp(logits, targets):
    x = np.asarray(logits, np.float64)
    lse = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
    return np.take_along_axis(x, np.asarray(targets)[..., None], -1)[..., 0] - lse


def test_loss_and_scores(tiny_cfg):
    params = model.init_params(tiny_cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (3, 33), 0, tiny_cfg.vocab_size)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    logits = model.forward(params, inputs, tiny_cfg)
    ref = _np_logp(logits, targets)

    value, metrics = loss.loss_fn(params, {"inputs": inputs, "targets": targets}, tiny_cfg)
    np.testing.assert_allclose(float(value), -ref.mean(), rtol=1e-5)
    assert float(metrics["tokens"]) == inputs.size

    weights = (jnp.arange(32) % 3 == 0).astype(jnp.float32)[None].repeat(3, 0)
    wvalue, _ = loss.loss_fn(params, {"inputs": inputs, "targets": targets, "weights": weights}, tiny_cfg)
    np.testing.assert_allclose(float(wvalue), -(ref * weights).sum() / weights.sum(), rtol=1e-5)

    logp, is_argmax = loss.score_tokens(params, inputs, targets, tiny_cfg)
    np.testing.assert_allclose(np.asarray(logp), ref, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(is_argmax), np.argmax(np.asarray(logits), -1) == np.asarray(targets))


def test_padding_mask_does_not_change_real_tokens(tiny_cfg):
    """Right padding with key_mask gives the unpadded sequence's scores at the real positions."""
    params = model.init_params(tiny_cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(2), (1, 20), 0, tiny_cfg.vocab_size)
    padded = jnp.concatenate([tokens, jnp.zeros((1, 12), jnp.int32)], axis=1)
    mask = jnp.arange(32)[None] < 20
    a, _ = loss.score_tokens(params, tokens[:, :-1], tokens[:, 1:], tiny_cfg)
    b, _ = loss.score_tokens(params, padded[:, :-1], padded[:, 1:], tiny_cfg, key_mask_BT=mask[:, :-1])
    np.testing.assert_allclose(np.asarray(b[:, :19]), np.asarray(a), atol=1e-5)


def _grads_and_loss(params, batch, cfg):
    (value, metrics), grads = jax.value_and_grad(loss.loss_fn, has_aux=True)(params, batch, cfg)
    return value, metrics["tokens"], grads


@pytest.mark.parametrize("chunk", [1, 8, 12, 32, 100])  # 12 and 100 do not divide T=32: a padded last chunk
def test_fused_chunked_loss_equals_the_full_logits_loss(tiny_cfg, chunk):
    params = model.init_params(tiny_cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (3, 33), 0, tiny_cfg.vocab_size)
    weights = (jax.random.uniform(jax.random.key(2), (3, 32)) < 0.7).astype(jnp.float32)
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "weights": weights}
    want, want_n, want_g = _grads_and_loss(params, batch, tiny_cfg)
    got, got_n, got_g = _grads_and_loss(params, batch, tiny_cfg.replace(loss_chunk=chunk))
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    assert float(got_n) == float(want_n) == float(weights.sum())
    jax.tree_util.tree_map_with_path(
        lambda path, g, w: np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4,
                                                      atol=1e-7 * float(jnp.abs(w).max()),
                                                      err_msg=jax.tree_util.keystr(path)), got_g, want_g)


def test_fused_loss_in_bfloat16_and_without_gradients(tiny_cfg):
    params = model.init_params(tiny_cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(3), (2, 17), 0, tiny_cfg.vocab_size)
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
    cfg = tiny_cfg.replace(dtype="bfloat16")
    want, _, want_g = _grads_and_loss(params, batch, cfg)
    got, _, got_g = _grads_and_loss(params, batch, cfg.replace(loss_chunk=4))
    np.testing.assert_allclose(float(got), float(want), rtol=1e-3)
    assert jax.tree.map(lambda g: g.dtype, got_g) == jax.tree.map(lambda g: g.dtype, want_g)
    np.testing.assert_allclose(np.asarray(got_g["wte"]), np.asarray(want_g["wte"]), atol=2e-2 * float(jnp.abs(want_g["wte"]).max()))
    value, _ = jax.jit(loss.loss_fn, static_argnums=2)(params, batch, cfg.replace(loss_chunk=4))  # primal only
    assert float(value) == float(got)


def test_fused_loss_never_holds_the_whole_logits():
    """XLA's static buffer assignment: the [B, T, V] logits (and their gradient) drop out of the
    step's temporaries. B=4, T=256, V=8192: 32 MB of fp32 logits."""
    cfg = GPT2Config(n_layer=1, n_embd=64, n_head=4, n_positions=256, vocab_size=8192)
    params = jax.eval_shape(lambda: model.init_params(cfg, jax.random.key(0)))
    tok = jax.ShapeDtypeStruct((4, 256), jnp.int32)

    def temp_bytes(c):
        step = jax.jit(jax.value_and_grad(lambda p, b: loss.loss_fn(p, b, c)[0]))
        return step.lower(params, {"inputs": tok, "targets": tok}).compile().memory_analysis().temp_size_in_bytes

    logits_bytes = 4 * 256 * 8192 * 4
    full, fused = temp_bytes(cfg), temp_bytes(cfg.replace(loss_chunk=32))
    assert full > logits_bytes and fused < full - logits_bytes


_HLO_PROBE = r"""
import re
import jax, jax.numpy as jnp
from gpt2_jax import loss, model, sharding
from gpt2_jax.config import GPT2Config
cfg = GPT2Config(n_layer=1, n_embd=48, n_head=4, n_positions=64, vocab_size=1000, loss_chunk=16)
mesh = sharding.make_mesh(data=2, fsdp=2, tensor=1)
shapes = jax.eval_shape(lambda: model.init_params(cfg, jax.random.key(0)))
layout = sharding.Layout(mesh)
params = jax.tree.map(lambda p, s: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=s), shapes,
                      model.param_shardings(cfg, layout))
tok = jax.ShapeDtypeStruct((8, 64), jnp.int32, sharding=layout.batch_sharding())
step = jax.jit(jax.value_and_grad(lambda p, b: loss.loss_fn(p, b, cfg, layout=layout)[0]))
hlo = step.lower(params, {"inputs": tok, "targets": tok}).compile().as_text()
head_reduce = r"f32\[1000,48\][^\n]*all-reduce"
bodies = set(re.findall(r"while\(.*?body=%?([\w.\-]+)", hlo))
comps = {m.group(1): m.group(2) for m in re.finditer(r"(?ms)^%?([\w.\-]+) \([^\n]*\{\n(.*?)^\}", hlo)}
in_loop = [b for b in bodies if re.search(head_reduce, comps.get(b, ""))]
print(len(bodies), len(in_loop), len(re.findall(head_reduce, hlo)))
"""


def test_fused_loss_reduces_the_head_gradient_once_under_a_mesh():
    """With the batch sharded over 4 devices (data 2 x fsdp 2), no [V, D] all-reduce sits inside
    the chunk loop: each device sums its own chunks and the head gradient is reduced after it
    (GSPMD alone all-reduces the carried sum in every iteration)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _HLO_PROBE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    n_loops, n_in_loop, n_head_reduces = map(int, out.stdout.split())
    assert n_loops >= 1 and n_head_reduces >= 1  # the chunk scan is there and the gradient is reduced ...
    assert n_in_loop == 0  # ... but not per chunk
