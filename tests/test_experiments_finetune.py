"""experiments/configs/finetune.py: `finetune_shakespeare` is nanoGPT's recipe, locked and typed,
and runs (from a tiny local HF checkpoint with the GPT-2 vocabulary, sizes overridden) with
gradient accumulation over microbatches of 1, starting at the checkpoint's loss."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import registry
from gpt2_jax import interop
from gpt2_jax.config import GPT2Config
from gpt2_jax.loss import loss_fn
from gpt2_jax.model import init_params
from gpt2_jax.train.metrics import read_jsonl


def test_finetune_shakespeare_is_nanogpts_recipe_and_locked():
    cfg = registry.get_config("finetune_shakespeare")
    with pytest.raises(AttributeError):
        cfg.not_a_field = 1
    train = registry.train_config("finetune_shakespeare")
    assert (train.init_from, train.model.name, train.data.tokenizer, train.data.source) == (
        "gpt2", "gpt2", "gpt2", "tinyshakespeare")
    assert (train.seq_len, train.batch_size, train.micro_batch_size, train.total_steps) == (1024, 32, 1, 20)
    assert train.data.val_fraction == 0.1 and train.model_config(50257).vocab_size == 50257
    opt = train.optimizer
    assert (opt.peak_lr, opt.warmup_steps, opt.min_lr_ratio) == (3e-5, 0, 1.0)  # constant 3e-5


def test_finetune_shakespeare_runs_from_a_local_hf_checkpoint(tmp_path, data_dir):
    from gpt2_jax.train import loop
    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=64)  # GPT-2's 50257 ids
    params = init_params(cfg, jax.random.key(0))
    interop.save_hf(params, cfg, tmp_path / "hf")
    (tmp_path / "slice.txt").write_text(
        (data_dir / "train_corpora" / "tinyshakespeare" / "input.txt").read_text()[:20_000])
    overrides = [f"init_from={tmp_path / 'hf'}", "model.name=custom", "model.n_layer=2", "model.n_embd=64",
                 "model.n_head=4", "model.n_positions=64", "seq_len=32", "batch_size=4", "grad_accum_steps=4",
                 "total_steps=2", "eval_every=2", "eval_batches=1", "eval_batch_size=2", "console=false",
                 f"data.source={tmp_path / 'slice.txt'}", "data.dump_batches=1", "mesh.data=1"]
    summary = loop.train(registry.train_config("finetune_shakespeare", overrides=overrides), str(tmp_path / "run"))
    assert summary["final_step"] == 2 and summary["init_from"] == str(tmp_path / "hf")
    assert np.isfinite(summary["final_eval_loss"])
    tokens = np.load(tmp_path / "run" / "batches" / "step_000001.npy")
    want = float(loss_fn(params, {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:])},
                         cfg)[0])
    first = [r["loss"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "loss" in r][0]
    assert tokens.shape == (4, 33) and first == pytest.approx(want, rel=1e-5)
