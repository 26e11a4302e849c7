"""The optimizer: AdamW with a weight-decay mask from parameter paths, linear warmup + cosine
decay, and global-norm clipping, all from optax (GPT-2/3 recipe)."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import optax

from gpt2_jax.errors import ConfigError

# Parameters that never get weight decay: biases, LayerNorm scale/bias; the token and position
# tables only when OptimizerConfig.decay_embeddings is set (GPT-3 / nanoGPT: decay 2-D matrices).
_EMBEDDINGS = ("wte", "wpe")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW + schedule hyper-parameters; defaults are GPT-2 small's (nanoGPT / GPT-3 paper)."""

    peak_lr: float = 6e-4            # learning rate at the end of warmup
    warmup_steps: int = 2000         # linear warmup from 0 to peak_lr
    decay_steps: int = 0             # cosine length incl. warmup; 0 = the run's total_steps
    min_lr_ratio: float = 0.1        # final lr = min_lr_ratio * peak_lr
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1        # decoupled (AdamW), only on masked-in parameters
    decay_embeddings: bool = False   # also decay wte / wpe
    grad_clip: float = 1.0           # global-norm clip; 0 disables

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"optimizer.{f.name}={value} must be a finite number (the default is "
                                  f"{f.default}).")
        for name in ("peak_lr", "eps", "b1", "b2"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"optimizer.{name}={getattr(self, name)} must be > 0.")
        for name in ("warmup_steps", "decay_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"optimizer.{name}={getattr(self, name)} must be >= 0.")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optimizer.min_lr_ratio={self.min_lr_ratio} must be in [0, 1].")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError(f"optimizer.weight_decay={self.weight_decay} and grad_clip="
                              f"{self.grad_clip} must be >= 0 (0 disables).")


def learning_rate_schedule(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """Linear warmup to peak_lr over warmup_steps, then cosine decay to min_lr_ratio·peak_lr at
    decay_steps (default total_steps), constant after."""
    decay_steps = cfg.decay_steps or total_steps
    warmup = min(cfg.warmup_steps, max(decay_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.peak_lr, warmup_steps=warmup,
        decay_steps=max(decay_steps, warmup + 1), end_value=cfg.peak_lr * cfg.min_lr_ratio)


def _path_names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def decay_mask(params: Any, decay_embeddings: bool = False) -> Any:
    """True for parameters that get weight decay: Dense kernels (and wte/wpe if asked); False for
    biases, LayerNorm scale/bias. Decided from each leaf's path, so it works on abstract trees."""
    def decide(path, _):
        names = _path_names(path)
        if names[-1] in _EMBEDDINGS:
            return decay_embeddings
        return names[-1] == "kernel"
    return jax.tree_util.tree_map_with_path(decide, params)


def make_optimizer(cfg: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
    """clip_by_global_norm -> AdamW(schedule, mask). One update per train step."""
    schedule = learning_rate_schedule(cfg, total_steps)
    adamw = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                        mask=lambda p: decay_mask(p, cfg.decay_embeddings))
    if cfg.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw)
    return adamw
