"""Training: `train(config, workdir)` (loop.py) runs a `TrainConfig` (config.py) on a mesh,
resuming from the workdir's newest checkpoint. Submodules are imported on first use."""
from __future__ import annotations

import importlib

_EXPORTS = {"train": "loop", "TrainConfig": "config", "ModelSpec": "config", "MeshConfig": "config"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"gpt2_jax.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'gpt2_jax.train' has no attribute {name!r}")


__all__ = list(_EXPORTS)
