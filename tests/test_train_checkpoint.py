"""gpt2_jax/train/checkpoint.py: save/restore round trip, fallback past a corrupt or torn latest
checkpoint, restore onto another mesh; and reading params from a workdir (gpt2_jax/workdir.py)."""
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import CheckpointError
from gpt2_jax import workdir
from gpt2_jax.train import checkpoint as ckpt_lib
from gpt2_jax.train import step as step_lib
from gpt2_jax.train.optimizer import OptimizerConfig, make_optimizer

CFG = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=16, vocab_size=64)
META = {"model_config": CFG.to_dict(), "tokenizer": "gpt2"}


@pytest.fixture(scope="module")
def states():
    """Two different states (steps 1 and 2) of the tiny model."""
    opt = make_optimizer(OptimizerConfig(), 10)
    init = jax.jit(lambda key, step: step_lib.init_state(CFG, opt, key).replace(step=step))
    a, b = init(jax.random.key(0), 1), init(jax.random.key(1), 2)
    abstract = step_lib.with_shardings(step_lib.abstract_state(CFG, opt),
                                       jax.tree.map(lambda x: x.sharding, a))
    return opt, a, b, abstract


def _save(workdir, *pairs):
    ck = ckpt_lib.Checkpointer(workdir, keep=5)
    for step, state in pairs:
        assert ck.save(step, state, META)
    ck.wait()
    ck.close()


def _assert_same(x, y):
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), x, y)


def test_round_trip_and_workdir_loading(tmp_path, states):
    _, a, b, abstract = states
    _save(tmp_path, (1, a), (2, b))
    ck = ckpt_lib.Checkpointer(tmp_path)
    assert ck.steps() == [1, 2]
    restored, meta = ck.restore_latest(abstract)
    assert int(restored.step) == 2 and meta["tokenizer"] == "gpt2" and meta["step"] == 2
    _assert_same(restored.params, b.params)
    _assert_same(restored.opt_state, b.opt_state)
    assert ck.save(2, b, META) is False  # an existing step is never overwritten
    ck.close()
    params, cfg = workdir.load_params_from_workdir(tmp_path, step=1)
    assert cfg == CFG
    _assert_same(params, a.params)
    assert workdir.is_workdir(tmp_path) and not workdir.is_workdir(tmp_path / "checkpoints")
    p2, cfg2 = workdir.load_for_inference(tmp_path, dtype="bfloat16")
    assert cfg2.dtype == "bfloat16" and cfg2.n_layer == 2
    _assert_same(p2, b.params)
    assert workdir.checkpoint_metadata(tmp_path)["model_config"]["n_embd"] == 32


def test_corrupt_latest_falls_back_with_warning(tmp_path, states):
    _, a, b, abstract = states
    _save(tmp_path, (1, a), (2, b))
    for f in (tmp_path / "checkpoints" / "2" / "params").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage")
    ck = ckpt_lib.Checkpointer(tmp_path, keep=5)
    with pytest.warns(RuntimeWarning, match="step 2 .* unreadable"):
        restored, meta = ck.restore_latest(abstract)
    assert int(restored.step) == 1 and meta["step"] == 1
    _assert_same(restored.params, a.params)
    assert ck.steps() == [1]
    assert len(list((tmp_path / ckpt_lib.CORRUPT_DIR).iterdir())) == 1  # kept for inspection
    assert ck.save(2, b, META)  # the run can save step 2 again
    ck.wait()
    ck.close()


def test_reading_a_damaged_workdir_names_the_step_and_the_fallback(tmp_path, states):
    _, a, b, _ = states
    _save(tmp_path, (1, a), (2, b))
    for f in (tmp_path / "checkpoints" / "2" / "params").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[:10])  # truncated array data
    with pytest.raises(CheckpointError, match=r"checkpoints/2 .* corrupt or truncated: cannot read its params.*"
                                              r"step=1 \(checkpoints/1\)"):
        workdir.load_params_from_workdir(tmp_path)
    params, _ = workdir.load_params_from_workdir(tmp_path, step=1)  # the named fallback works
    _assert_same(params, a.params)
    (tmp_path / "checkpoints" / "2" / "meta" / "metadata").write_text("{bad")
    with pytest.raises(CheckpointError, match=r"checkpoints/2 .* meta \(not valid JSON\)"):
        workdir.checkpoint_metadata(tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]


def test_failed_write_is_a_training_error_naming_the_resume_step(tmp_path, states, monkeypatch):
    from gpt2_jax.errors import TrainingError
    _, a, b, _ = states
    _save(tmp_path, (1, a))
    ck = ckpt_lib.Checkpointer(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck.manager, "save", disk_full)
    with pytest.raises(TrainingError, match=r"checkpoint of step 2 .* failed \(OSError: .*No space left.*"
                                            r"newest complete checkpoint is step 1.*rerun"):
        ck.save(2, b, META)
    ck.close()


def test_torn_save_is_ignored(tmp_path, states):
    _, a, _, abstract = states
    _save(tmp_path, (1, a))
    torn = tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-1234567"  # a save killed midway
    (torn / "params").mkdir(parents=True)
    (torn / "params" / "partial").write_bytes(b"\x00" * 10)
    ck = ckpt_lib.Checkpointer(tmp_path)
    restored, _ = ck.restore_latest(abstract)
    assert int(restored.step) == 1
    ck.close()


def test_missing_workdir_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoints"):
        workdir.load_params_from_workdir(tmp_path / "nope")
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        workdir.load_params_from_workdir(tmp_path)


_MESH_SCRIPT = textwrap.dedent("""
    import sys, jax, numpy as np
    from gpt2_jax import sharding
    from gpt2_jax.config import GPT2Config
    from gpt2_jax.train import checkpoint as C, step as S
    from gpt2_jax.train.optimizer import OptimizerConfig, make_optimizer
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=16, vocab_size=64)
    opt = make_optimizer(OptimizerConfig(), 10)
    workdir = sys.argv[1]
    def on(mesh):
        sh = S.state_shardings(cfg, opt, sharding.Layout(mesh))
        return sh, S.with_shardings(S.abstract_state(cfg, opt), sh)
    sh8, _ = on(sharding.make_mesh(1, 8, 1))
    state = jax.jit(lambda k: S.init_state(cfg, opt, k), out_shardings=sh8)(jax.random.key(3))
    assert state.params["wte"].sharding.spec == sharding.P(None, "fsdp")
    ck = C.Checkpointer(workdir); ck.save(5, state, {"model_config": cfg.to_dict()}); ck.wait(); ck.close()
    want = jax.tree.map(np.asarray, state)
    for mesh in (sharding.make_mesh(2, 2, 2), sharding.make_mesh(1, 2, 2, devices=jax.devices()[:4]),
                 sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])):
        sh, abstract = on(mesh)
        restored, meta = C.Checkpointer(workdir).restore_latest(abstract)
        assert int(restored.step) == 5
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b),
                     (restored.params, restored.opt_state), (want.params, want.opt_state))
        jax.tree.map(lambda a, s: a.sharding == s or sys.exit(f"sharding {a.sharding} != {s}"), restored, sh)
        print("restored on", dict(mesh.shape), restored.params["h"]["mlp"]["c_fc"]["kernel"].sharding.spec)
    print("OK")
""")


def test_restore_onto_other_meshes(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _MESH_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("restored on") == 3 and out.stdout.strip().endswith("OK")
    assert "'fsdp': 2, 'tensor': 2" in out.stdout
