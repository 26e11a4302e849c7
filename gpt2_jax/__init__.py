"""gpt2_jax: GPT-2 (Radford et al., 2019) in JAX/Flax.

    import gpt2_jax as g
    cfg = g.GPT2Config.from_name("gpt2")
    params = g.init_params(cfg, jax.random.key(0))
    logits = g.forward(params, tokens, cfg)

Names resolve lazily, so `import gpt2_jax` imports neither JAX nor TensorFlow nor torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "GPT2Config": "gpt2_jax.config",
    "init_params": "gpt2_jax.model",
    "forward": "gpt2_jax.model",
    "lm_head": "gpt2_jax.model",
    "count_params": "gpt2_jax.model",
    "param_logical_axes": "gpt2_jax.model",
    "loss_fn": "gpt2_jax.loss",
    "score_tokens": "gpt2_jax.loss",
    "generate": "gpt2_jax.generate",
    "Layout": "gpt2_jax.sharding",
    "make_mesh": "gpt2_jax.sharding",
    "Tokenizer": "gpt2_jax.tokenizer",
    "load_checkpoint": "gpt2_jax.interop",
    "save_hf": "gpt2_jax.interop",
    "save_openai": "gpt2_jax.interop",
    "run_eval": "gpt2_jax.evals.runner",
    "UserError": "gpt2_jax.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # also shadows the submodule `generate` with its function
        return value
    raise AttributeError(f"module 'gpt2_jax' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
