"""gpt2_jax/train/init.py (config.init_from) and data.dump_batches, end to end: fine-tuning a tiny
HF checkpoint on a (2, 2, 2) mesh of 8 simulated devices starts at transformers' loss of that
checkpoint on the dumped step-1 batch and matches a one-device run for 20 steps; replaying the
dumped batches through loss_fn reproduces every logged loss; init_from another run's workdir
starts from its params with a fresh optimizer; a run's own checkpoint wins over init_from."""
import logging
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from gpt2_jax import interop, workdir as workdir_lib
from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import CheckpointError
from gpt2_jax.loss import loss_fn
from gpt2_jax.model import init_params
from gpt2_jax.train import init as init_lib
from gpt2_jax.train.metrics import read_jsonl

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS, VOCAB = 20, 384
CFG = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=64)


def _overrides(setup, **extra):
    base = {"init_from": setup["hf"], "model.name": "custom", "model.n_layer": 2, "model.n_embd": 64,
            "model.n_head": 4, "model.n_positions": 64, "seq_len": 32, "batch_size": 8,
            "data.source": setup["corpus"], "data.tokenizer": setup["sp"], "data.tokenizer_vocab_size": 0,
            "data.cache_dir": setup["cache"], "data.dump_batches": STEPS, "total_steps": STEPS,
            "optimizer.peak_lr": 1e-3, "optimizer.warmup_steps": 0, "optimizer.min_lr_ratio": 1.0,
            "log_every": 1, "eval_every": 0, "console": False, "checkpoint_every": STEPS}
    return [f"{k}={v}" for k, v in {**base, **extra}.items()]


def _cmd(workdir, overrides):
    return [sys.executable, "-m", "experiments.main", "--experiment=tiny_test", "--mode=train",
            f"--workdir={workdir}", *[f"--config.{o}" for o in overrides]]


def _env(devices):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}" if devices > 1 else ""
    return env


def _losses(workdir):
    return [r["loss"] for r in read_jsonl(pathlib.Path(workdir) / "metrics.jsonl") if "loss" in r]


def _batch(workdir, step):
    return np.load(pathlib.Path(workdir) / "batches" / f"step_{step:06d}.npy")


def _loss(params, tokens):
    batch = {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:])}
    return float(loss_fn(params, batch, CFG)[0])


@pytest.fixture(scope="module")
def setup(tmp_path_factory, data_dir):
    """A Tiny Shakespeare slice, a 384-piece BPE on it, a random tiny HF checkpoint of that
    vocabulary, and two 20-step fine-tuning runs from it, in parallel: (2, 2, 2) over 8 simulated
    devices, and one device with a checkpoint after every step (for the replay)."""
    from gpt2_jax.tokenizer import Tokenizer
    root = tmp_path_factory.mktemp("init_from")
    text = (data_dir / "train_corpora" / "tinyshakespeare" / "input.txt").read_text()[:60_000]
    (root / "corpus.txt").write_text(text)
    Tokenizer.train_sentencepiece([str(root / "corpus.txt")], str(root / "sp"), vocab_size=VOCAB, num_threads=1)
    interop.save_hf(init_params(CFG, jax.random.key(7)), CFG, root / "hf")
    s = {"root": root, "corpus": str(root / "corpus.txt"), "sp": str(root / "sp.model"), "hf": str(root / "hf"),
         "cache": str(root / "token_cache")}
    runs = {"mesh": (8, _overrides(s, **{"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2})),
            "single": (1, _overrides(s, checkpoint_every=1, keep_checkpoints=0))}
    procs = {name: subprocess.Popen(_cmd(root / name, o), env=_env(d), cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name, (d, o) in runs.items()}
    for name, p in procs.items():
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        s[name] = root / name
    return s


def test_finetune_on_a_2x2x2_mesh_starts_at_transformers_loss_and_matches_one_device(setup):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    mesh, single = _losses(setup["mesh"]), _losses(setup["single"])
    assert len(mesh) == len(single) == STEPS and mesh[-1] < mesh[0] - 0.1  # it fine-tunes
    tokens = _batch(setup["mesh"], 1)
    assert tokens.dtype == np.int32 and tokens.shape == (8, 33)
    assert sorted(p.name for p in (setup["mesh"] / "batches").iterdir()) == [
        f"step_{i:06d}.npy" for i in range(1, STEPS + 1)]
    for i in range(1, STEPS + 1):  # both layouts consumed the same global batches
        np.testing.assert_array_equal(_batch(setup["mesh"], i), _batch(setup["single"], i))
    model = transformers.GPT2LMHeadModel.from_pretrained(setup["hf"], attn_implementation="eager").eval()
    with torch.no_grad():
        ids = torch.from_numpy(tokens.astype(np.int64))
        want = float(model(input_ids=ids, labels=ids).loss)  # predicts ids[:, 1:] from ids[:, :-1]
    print(f"step-1 loss: mesh {mesh[0]:.7f}, transformers {want:.7f}; max 20-step rel diff "
          f"{max(abs(a - b) / abs(b) for a, b in zip(mesh, single)):.2e}")
    assert mesh[0] == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(mesh, single, rtol=1e-4)


def test_replaying_the_dumped_batches_reproduces_every_logged_loss(setup):
    """Step i's loss is loss_fn(params after step i-1, dumped batch i): the HF weights for step 1,
    the run's checkpoint i-1 (saved after every step) for the others."""
    logged = _losses(setup["single"])
    params, _ = interop.load_checkpoint(setup["hf"])
    replayed = []
    for i in range(1, STEPS + 1):
        if i > 1:
            params, _ = workdir_lib.load_params_from_workdir(setup["single"], step=i - 1)
        replayed.append(_loss(params, _batch(setup["single"], i)))
    np.testing.assert_allclose(replayed, logged, rtol=1e-5)
    assert len(set(np.round(logged, 4))) == STEPS  # a different loss each step: the replay is not trivial


def test_init_from_a_workdir_starts_from_its_params_with_a_fresh_optimizer(setup, tmp_path, caplog):
    from experiments import registry
    from gpt2_jax.train import loop, optimizer as opt_lib, step as step_lib
    source = setup["single"]
    cfg = registry.train_config("tiny_test", overrides=_overrides(
        setup, init_from=str(source), total_steps=2, checkpoint_every=1, **{"data.dump_batches": 1}))
    summary = loop.train(cfg, str(tmp_path / "b"))
    assert (summary["init_from"], summary["start_step"], summary["resumed"]) == (str(source), 0, False)
    src_params, _ = workdir_lib.load_params_from_workdir(source)  # its newest: step 20
    tokens = _batch(tmp_path / "b", 1)
    assert _losses(tmp_path / "b")[0] == pytest.approx(_loss(src_params, tokens), rel=1e-5)
    # step 1 from the source params with a FRESH AdamW (the source's moments and count would differ)
    tx = opt_lib.make_optimizer(cfg.optimizer, cfg.total_steps)
    train_step = step_lib.make_train_step(CFG, tx, opt_lib.learning_rate_schedule(cfg.optimizer, cfg.total_steps))
    state = step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=src_params, opt_state=tx.init(src_params))
    batch = {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:])}
    state, _ = jax.jit(train_step)(state, batch)
    got, _ = workdir_lib.load_params_from_workdir(tmp_path / "b", step=1)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

    # rerun with more steps and another init_from: the run's own checkpoint (step 2) wins
    again = cfg.replace(total_steps=3, init_from=setup["hf"])
    with caplog.at_level(logging.INFO, logger="gpt2_jax.train.loop"):
        summary = loop.train(again, str(tmp_path / "b"))
    assert (summary["start_step"], summary["resumed"], summary["init_from"]) == (2, True, "")
    assert "the run's own checkpoint takes precedence" in caplog.text
    assert [r["step"] for r in read_jsonl(tmp_path / "b" / "metrics.jsonl") if "loss" in r] == [1, 2, 3]


def test_a_larger_vocab_pads_wte_with_the_mean_row_and_other_shapes_must_match():
    params = init_params(CFG, jax.random.key(1))
    wte = np.asarray(params["wte"])
    big = CFG.replace(vocab_size=VOCAB + 48)
    fitted = init_lib.fit_params(jax.tree.map(np.asarray, params), CFG, big, "x")
    np.testing.assert_array_equal(fitted[("wte",)][:VOCAB], wte)
    np.testing.assert_allclose(fitted[("wte",)][VOCAB:], np.broadcast_to(wte.astype(np.float64).mean(0), (48, 64)),
                               rtol=1e-6, atol=1e-9)
    flat = traverse_util.flatten_dict(params)
    assert all(np.array_equal(fitted[k], flat[k]) for k in flat if k != ("wte",))
    # the padded ids take only a sliver of probability: the mean row's logit is the mean logit
    h = np.random.default_rng(0).normal(size=(5, 64)).astype(np.float32)
    logits = h @ fitted[("wte",)].T
    np.testing.assert_allclose(logits[:, VOCAB:], np.broadcast_to(logits[:, :VOCAB].mean(1, keepdims=True),
                                                                  (5, 48)), rtol=1e-4, atol=1e-5)
    with pytest.raises(CheckpointError, match=r"tensor wpe has shape \(64, 64\) but .* expects \(128, 64\)"):
        init_lib.fit_params(jax.tree.map(np.asarray, params), CFG, CFG.replace(n_positions=128), "x")
    with pytest.raises(CheckpointError, match=r"tensor wte has shape \(384, 64\) .* expects \(200, 64\)"):
        init_lib.fit_params(jax.tree.map(np.asarray, params), CFG, CFG.replace(vocab_size=200), "x")


@pytest.mark.parametrize("fmt", ["hf", "openai"])
def test_load_params_reads_hf_and_openai_dirs_onto_the_given_shardings(tmp_path, fmt):
    params = init_params(CFG, jax.random.key(2))
    (interop.save_hf if fmt == "hf" else interop.save_openai)(params, CFG, tmp_path / fmt)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    got = init_lib.load_params(str(tmp_path / fmt), CFG, jax.tree.map(lambda _: sharding, params))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(params)):
        assert a.sharding == sharding
        np.testing.assert_array_equal(a, b)
