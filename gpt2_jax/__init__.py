"""gpt2_jax: GPT-2 (Radford et al., 2019) in JAX/Flax.

    import gpt2_jax as g
    cfg = g.GPT2Config.from_name("gpt2")
    params = g.init_params(cfg, jax.random.key(0))
    logits = g.forward(params, tokens, cfg)

Names are resolved lazily so `import gpt2_jax` stays cheap (no TensorFlow, no torch).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "GPT2Config": "gpt2_jax.config",
    "init_params": "gpt2_jax.model",
    "forward": "gpt2_jax.model",
    "count_params": "gpt2_jax.model",
    "param_logical_axes": "gpt2_jax.model",
    "init_cache": "gpt2_jax.model",
    "forward_cached": "gpt2_jax.model",
    "loss_fn": "gpt2_jax.loss",
    "score_tokens": "gpt2_jax.loss",
    "make_mesh": "gpt2_jax.sharding",
    "param_shardings": "gpt2_jax.sharding",
    "Tokenizer": "gpt2_jax.tokenizer",
    "load_checkpoint": "gpt2_jax.interop",
    "save_hf": "gpt2_jax.interop",
    "save_openai": "gpt2_jax.interop",
    "UserError": "gpt2_jax.errors",
}

# `generate` is both a submodule and its main function: import it eagerly so the package attribute
# is the function even after `import gpt2_jax.generate` (which would otherwise rebind it).
from gpt2_jax.generate import generate  # noqa: E402, F401  (exported through __all__)

__all__ = sorted([*_EXPORTS, "generate"])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gpt2_jax' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
