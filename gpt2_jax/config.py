"""Model configuration: the GPT-2 family as frozen dataclasses, with parameter and FLOP counts."""
from __future__ import annotations

import dataclasses
from typing import Any

from gpt2_jax.errors import ConfigError

# name -> (n_layer, n_embd, n_head); every released size shares vocab 50257 and context 1024.
_FAMILY = {
    "gpt2": (12, 768, 12),
    "gpt2-medium": (24, 1024, 16),
    "gpt2-large": (36, 1280, 20),
    "gpt2-xl": (48, 1600, 25),
}
# Aliases by parameter count, as the paper's Table 2 and the experiment registry name them.
_ALIASES = {"124m": "gpt2", "355m": "gpt2-medium", "774m": "gpt2-large", "1558m": "gpt2-xl",
            "1.5b": "gpt2-xl", "gpt2-small": "gpt2"}

ATTENTION_IMPLS = ("auto", "blocked", "online", "xla", "cudnn", "splash", "reference")
REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims")
DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    """Architecture and numerics of one GPT-2 model; immutable so it can be a static jit argument."""

    vocab_size: int = 50257          # BPE vocabulary; 50256 is <|endoftext|>
    n_positions: int = 1024          # context length (learned position table size)
    n_embd: int = 768                # residual width D
    n_layer: int = 12                # number of transformer blocks
    n_head: int = 12                 # attention heads; head_dim = n_embd // n_head
    n_inner: int | None = None       # MLP width; None means 4 * n_embd
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02  # std of N(0, s) init; residual projections use s/sqrt(2 n_layer)
    dropout: float = 0.0             # embedding, attention-prob and residual dropout (off by default)
    dtype: str = "float32"           # compute dtype for matmuls (bfloat16 on TPU); params stay float32
    attention: str = "auto"          # kernel: auto picks per backend (see gpt2_jax.attention)
    attn_block_size: int = 128       # query/key block for the blocked and online kernels
    scan_layers: bool = True         # lax.scan over blocks (fast compile) vs fully unrolled
    remat: str = "none"              # activation checkpointing policy per block
    loss_chunk: int = 0              # loss_fn: positions per fused LM-head + cross-entropy chunk; 0 = whole [B, T, V] logits

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                              "choose n_head that divides n_embd.")
        for field, value, allowed in (("attention", self.attention, ATTENTION_IMPLS),
                                      ("remat", self.remat, REMAT_POLICIES),
                                      ("dtype", self.dtype, DTYPES)):
            if value not in allowed:
                raise ConfigError(f"{field}={value!r} is not one of {allowed}.")
        for field in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "attn_block_size"):
            if getattr(self, field) <= 0:
                raise ConfigError(f"{field}={getattr(self, field)} must be a positive integer.")
        if self.loss_chunk < 0:
            raise ConfigError(f"loss_chunk={self.loss_chunk} must be >= 0 (0 = no chunking).")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1).")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> "GPT2Config":
        """The released architecture called `name` (gpt2, gpt2-medium, gpt2-large, gpt2-xl)."""
        key = _ALIASES.get(name.lower(), name.lower())
        if key not in _FAMILY:
            raise ConfigError(f"unknown model name {name!r}; known: {', '.join(_FAMILY)} "
                              f"(aliases {', '.join(_ALIASES)}).")
        n_layer, n_embd, n_head = _FAMILY[key]
        return cls(n_layer=n_layer, n_embd=n_embd, n_head=n_head, **overrides)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(_FAMILY)

    def replace(self, **changes: Any) -> "GPT2Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GPT2Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown GPT2Config fields {sorted(unknown)}; known: {sorted(known)}.")
        return cls(**d)

    # ------------------------------------------------------------------ derived sizes
    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_dim(self) -> int:
        return self.n_inner or 4 * self.n_embd

    @property
    def num_params(self) -> int:
        """Exact parameter count (tied embeddings counted once)."""
        d, f, l = self.n_embd, self.mlp_dim, self.n_layer
        block = (2 * 2 * d                   # ln_1, ln_2 scale+bias
                 + d * 3 * d + 3 * d         # c_attn
                 + d * d + d                 # attn c_proj
                 + d * f + f                 # mlp c_fc
                 + f * d + d)                # mlp c_proj
        return self.vocab_size * d + self.n_positions * d + l * block + 2 * d

    def flops_per_token(self, seq_len: int | None = None, training: bool = True) -> float:
        """Matmul FLOPs per token (PaLM appendix B convention): 6N + 12·L·T·D for a train step
        (forward + backward), a third of that for a forward pass. N excludes position embeddings
        but includes the tied LM head."""
        t = seq_len or self.n_positions
        n = self.num_params - self.n_positions * self.n_embd
        attn = 12 * self.n_layer * t * self.n_embd  # QK^T and AV, fwd+bwd, full (unmasked) count
        fwd_bwd = 6 * n + attn
        return float(fwd_bwd if training else fwd_bwd / 3)
