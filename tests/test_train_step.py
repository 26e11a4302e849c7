"""gpt2_jax/train/step.py: the pure train step (accumulation, mixed precision, remat), the eval
step, and state construction. Single device; multi-device behaviour is in test_train_loop.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpt2_jax import sharding
from gpt2_jax.config import GPT2Config
from gpt2_jax.loss import loss_fn
from gpt2_jax.train import step as step_lib
from gpt2_jax.train.optimizer import OptimizerConfig, learning_rate_schedule, make_optimizer

CFG = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=16, vocab_size=64)
OC = OptimizerConfig(peak_lr=1e-2, warmup_steps=2, min_lr_ratio=0.1)
TOTAL = 20


@pytest.fixture(scope="module")
def setup():
    opt, sched = make_optimizer(OC, TOTAL), learning_rate_schedule(OC, TOTAL)
    state = step_lib.init_state(CFG, opt, jax.random.key(0))
    rows = np.random.RandomState(0).randint(0, 64, (8, 17)).astype(np.int32)
    batch = {"inputs": jnp.asarray(rows[:, :-1]), "targets": jnp.asarray(rows[:, 1:])}
    return opt, sched, state, batch


_JITTED = {}


def _run(cfg, opt, sched, state, batch, steps, accum=1):
    key = (cfg, accum)
    if key not in _JITTED:  # one compilation per (config, accumulation) for the whole module
        _JITTED[key] = jax.jit(step_lib.make_train_step(cfg, opt, sched, grad_accum_steps=accum))
    fn = _JITTED[key]
    out = []
    for _ in range(steps):
        state, m = fn(state, batch)
        out.append(jax.device_get(m))
    return state, out


def test_step_is_pure_and_learns(setup):
    opt, sched, state, batch = setup
    s1, m1 = _run(CFG, opt, sched, state, batch, 8)
    s2, m2 = _run(CFG, opt, sched, state, batch, 8)  # same compiled step, fresh copy of the state
    assert [m["loss"] for m in m1] == [m["loss"] for m in m2]           # same inputs, same outputs
    jax.tree.map(np.testing.assert_array_equal, s1.params, s2.params)
    assert int(s1.step) == 8
    assert m1[-1]["loss"] < m1[0]["loss"] - 0.5                          # memorises the batch
    first_loss, _ = loss_fn(state.params, batch, CFG)
    assert m1[0]["loss"] == pytest.approx(float(first_loss), rel=1e-6)  # loss before the update
    for i, m in enumerate(m1):
        assert m["learning_rate"] == pytest.approx(float(sched(i)), rel=1e-6)
        assert m["tokens"] == 8 * 16


def test_grad_accumulation_matches_one_big_batch(setup):
    opt, sched, state, batch = setup
    s1, m1 = _run(CFG, opt, sched, state, batch, 3)
    s4, m4 = _run(CFG, opt, sched, state, batch, 3, accum=4)
    np.testing.assert_allclose([m["loss"] for m in m4], [m["loss"] for m in m1], rtol=1e-5)
    np.testing.assert_allclose([m["grad_norm"] for m in m4], [m["grad_norm"] for m in m1], rtol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5), s4.params, s1.params)
    assert int(s4.step) == 3  # one optimizer update per step, however many microbatches


def test_microbatches_keep_each_devices_rows():
    x = jnp.arange(8)[:, None] * jnp.ones((1, 3), jnp.int32)
    micro = step_lib._microbatches({"x": x}, 2)["x"]
    assert micro.shape == (2, 4, 3)
    assert micro[:, :, 0].tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]


@pytest.mark.parametrize("changes", [dict(dtype="bfloat16"), dict(remat="full")])
def test_mixed_precision_and_remat(setup, changes):
    opt, sched, state, batch = setup
    _, ref = _run(CFG, opt, sched, state, batch, 3)
    s, m = _run(CFG.replace(**changes), opt, sched, state, batch, 3)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(s.params))  # params stay fp32
    tol = 2e-2 if changes.get("dtype") == "bfloat16" else 1e-5
    np.testing.assert_allclose([x["loss"] for x in m], [x["loss"] for x in ref], rtol=tol)


def test_eval_step_ignores_padding_rows(setup):
    _, _, state, batch = setup
    weights = np.ones((8, 16), np.float32)
    weights[6:] = 0.0
    out = jax.jit(step_lib.make_eval_step(CFG))(state.params, dict(batch, weights=jnp.asarray(weights)))
    want, _ = loss_fn(state.params, {k: v[:6] for k, v in batch.items()}, CFG)
    assert float(out["tokens"]) == 6 * 16
    assert float(out["nll_sum"] / out["tokens"]) == pytest.approx(float(want), rel=1e-5)


def test_abstract_state_and_shardings_match_real_state(setup):
    opt, _, state, _ = setup
    abstract = step_lib.abstract_state(CFG, opt)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    jax.tree.map(lambda a, x: (a.shape, a.dtype) == (x.shape, x.dtype) or pytest.fail(f"{a} vs {x.shape}"),
                 abstract, state)
    sh = step_lib.state_shardings(CFG, opt, sharding.Layout(sharding.make_mesh(1, 1, 1)))
    assert jax.tree.structure(sh) == jax.tree.structure(state)
