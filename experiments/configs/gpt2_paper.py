"""The GPT-2 paper's four sizes (Radford et al. 2019, Table 2): context 1024, batch 512 sequences,
a learning rate per size, on OpenWebText (the public stand-in for WebText), with mesh presets for
named TPU slices (`tpu=` in the registry)."""
from __future__ import annotations

import ml_collections

from experiments.configs import base

# size -> (model name, peak lr). The paper says only that each size's lr was tuned on held-out
# WebText; these are the GPT-3 paper's values for the nearest sizes (Table 2.1: 125M 6e-4,
# 350M 3e-4, 760M 2.5e-4, 1.3B 2e-4), the common choice for GPT-2 reproductions.
SIZES = {
    "124m": ("gpt2", 6e-4),
    "355m": ("gpt2-medium", 3e-4),
    "774m": ("gpt2-large", 2.5e-4),
    "1558m": ("gpt2-xl", 2e-4),
}

# (size, slice) -> mesh and memory settings. Chips: v4-32 = 16 chips × 32 GiB, v5p-128 = 64 × 95 GiB,
# v5litepod-16 = 16 × 16 GiB, v6e-16 = 16 × 32 GiB. Small models replicate (pure data parallel);
# larger ones shard params + Adam state with FSDP and checkpoint activations. Every preset fits its
# HBM in `--mode=aot` on simulated CPU devices (per-device GiB: 124m v4-32 21.7, v5p-128 26.7,
# v5litepod-16 6.1; 355m v4-32 16.6, v5p-128 60.4; 774m v4-32 10.8, v5p-128 36.5; 1558m v4-32 8.7,
# v5p-128 7.3, v6e-16 12.2). CPU compiles materialise attention scores that TPU's splash kernel
# does not, so these are upper bounds; rerun --mode=aot after changing a preset.
TPU_PRESETS = {
    ("124m", "v4-32"): dict(data=16, fsdp=1, tensor=1, remat="dots", grad_accum_steps=2),
    ("124m", "v5p-128"): dict(data=64, fsdp=1, tensor=1, remat="none", grad_accum_steps=1),
    ("124m", "v5litepod-16"): dict(data=16, fsdp=1, tensor=1, remat="full", grad_accum_steps=4),
    ("124m", "v6e-16"): dict(data=16, fsdp=1, tensor=1, remat="dots", grad_accum_steps=2),
    ("355m", "v4-32"): dict(data=1, fsdp=16, tensor=1, remat="full", grad_accum_steps=1),
    ("355m", "v5p-128"): dict(data=4, fsdp=16, tensor=1, remat="none", grad_accum_steps=1),
    ("355m", "v6e-16"): dict(data=1, fsdp=16, tensor=1, remat="full", grad_accum_steps=1),
    ("774m", "v4-32"): dict(data=1, fsdp=16, tensor=1, remat="full", grad_accum_steps=2),
    ("774m", "v5p-128"): dict(data=4, fsdp=16, tensor=1, remat="dots", grad_accum_steps=1),
    ("774m", "v6e-16"): dict(data=1, fsdp=16, tensor=1, remat="full", grad_accum_steps=2),
    ("1558m", "v4-32"): dict(data=1, fsdp=16, tensor=1, remat="full", grad_accum_steps=4),
    ("1558m", "v5p-128"): dict(data=2, fsdp=32, tensor=1, remat="full", grad_accum_steps=1),
    ("1558m", "v6e-16"): dict(data=1, fsdp=8, tensor=2, remat="full", grad_accum_steps=4),
}


def slices(size: str) -> list[str]:
    return sorted(t for s, t in TPU_PRESETS if s == size)


def get_config(size: str, tpu: str = "") -> ml_collections.ConfigDict:
    from gpt2_jax.errors import ConfigError
    from gpt2_jax.train import mfu

    name, lr = SIZES[size]
    config = base.get_config()
    config.model.name = name
    config.data.source = "tfds:openwebtext"
    config.data.tokenizer = "gpt2"
    config.data.val_fraction = 0.0005     # ~4.5M tokens of OpenWebText held out
    config.model.vocab_size = 50304       # 50257 padded to a multiple of 128 (MXU / tensor-parallel friendly)
    config.seq_len = 1024
    config.batch_size = 512
    config.total_steps = 200_000          # ~105B tokens; the paper does not state its step count
    config.optimizer.peak_lr = lr
    config.optimizer.warmup_steps = 2000
    config.dtype = "bfloat16"
    config.checkpoint_every = 2000
    config.log_every = 100
    config.eval_every = 2000
    config.eval_batches = 20
    config.eval_after_training = []       # e.g. ["lambada", "cbt_cn", "wikitext2"] once the eval suite lands
    if tpu:
        if (size, tpu) not in TPU_PRESETS:
            raise ConfigError(f"no TPU preset for gpt2_{size} on {tpu!r}; known slices for this size: "
                              f"{slices(size)}. Set --config.mesh.* yourself instead.")
        p = TPU_PRESETS[(size, tpu)]
        config.tpu = tpu
        config.mesh.data, config.mesh.fsdp, config.mesh.tensor = p["data"], p["fsdp"], p["tensor"]
        config.remat, config.grad_accum_steps = p["remat"], p["grad_accum_steps"]
        kind, _ = mfu.slice_chips(tpu)
        config.hbm_gb = mfu.chip_spec(kind)[1]
    return config
