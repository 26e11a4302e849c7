"""A training run's configuration, typed: frozen dataclasses that mirror the application's
ml_collections configs (experiments/configs/base.py documents every field). `TrainConfig.from_dict`
is the one boundary where an application config enters the library; below it nothing reads a
ConfigDict. Values are checked here, before anything is built, as ConfigErrors naming the field."""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Mapping

from gpt2_jax.config import ATTENTION_IMPLS, DTYPES, REMAT_POLICIES, GPT2Config
from gpt2_jax.data.sources import DataConfig
from gpt2_jax.errors import ConfigError
from gpt2_jax.sharding import DEFAULT_RULES, Rules, check_rules
from gpt2_jax.train.optimizer import OptimizerConfig


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model to train: a family size and/or explicit sizes; 0 = from the name or the data."""
    name: str = "gpt2"               # gpt2 .. gpt2-xl, 124m .. 1558m, or "custom"
    n_layer: int = 0
    n_embd: int = 0
    n_head: int = 0
    n_positions: int = 0             # 0 = max(seq_len, 1024) for a family name, seq_len for custom
    vocab_size: int = 0              # 0 = the tokenizer's; larger pads (e.g. 50304)
    dropout: float = 0.0
    attention: str = "auto"
    scan_layers: bool = True

    def __post_init__(self):
        if self.attention not in ATTENTION_IMPLS:
            raise ConfigError(f"model.attention={self.attention!r} is not one of {ATTENTION_IMPLS}.")
        for name in ("n_layer", "n_embd", "n_head", "n_positions", "vocab_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.{name}={getattr(self, name)} must be >= 0 (0 = from model.name).")

    def resolve(self, seq_len: int, tokenizer_vocab: int, *, dtype: str = "float32", remat: str = "none",
                loss_chunk: int = 0) -> GPT2Config:
        """The GPT2Config this spec names, for a tokenizer of `tokenizer_vocab` ids."""
        if self.name != "custom":
            base = GPT2Config.from_name(self.name)
            sizes = dict(n_layer=base.n_layer, n_embd=base.n_embd, n_head=base.n_head)
        else:
            sizes = {}
        for key in ("n_layer", "n_embd", "n_head"):
            if getattr(self, key):
                sizes[key] = getattr(self, key)
            elif key not in sizes:
                raise ConfigError(f"model.{key} is 0 and model.name is 'custom'; set model.{key} or a "
                                  f"family name ({', '.join(GPT2Config.names())}).")
        vocab = self.vocab_size or tokenizer_vocab
        if vocab < tokenizer_vocab:
            raise ConfigError(f"model.vocab_size={vocab} is smaller than the tokenizer's vocabulary "
                              f"({tokenizer_vocab}); use 0 (= the tokenizer's) or a larger value.")
        n_positions = self.n_positions or max(seq_len, 1024 if self.name != "custom" else seq_len)
        if seq_len > n_positions:
            raise ConfigError(f"seq_len={seq_len} exceeds model.n_positions={n_positions}; lower seq_len "
                              "or raise n_positions.")
        return GPT2Config(vocab_size=vocab, n_positions=n_positions, dropout=self.dropout,
                          attention=self.attention, scan_layers=self.scan_layers, dtype=dtype, remat=remat,
                          loss_chunk=loss_chunk, **sizes)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh axis sizes; one may be -1 (= the rest of the devices)."""
    data: int = -1
    fsdp: int = 1
    tensor: int = 1


_POSITIVE = ("seq_len", "batch_size", "grad_accum_steps", "total_steps", "log_every", "checkpoint_every")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run reads (see experiments/configs/base.py for each field)."""
    name: str = ""
    init_from: str = ""              # "" = random init; else a checkpoint (train.init.SOURCES_HELP)
    model: ModelSpec = ModelSpec()
    data: DataConfig = DataConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    mesh: MeshConfig = MeshConfig()
    logical_axis_rules: Rules = DEFAULT_RULES
    dtype: str = "float32"
    remat: str = "none"
    loss_chunk: int = 0
    seq_len: int = 1024
    batch_size: int = 512
    grad_accum_steps: int = 1
    total_steps: int = 100_000
    seed: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    async_checkpointing: bool = True
    log_every: int = 50
    console: bool = True
    eval_every: int = 1000
    eval_batches: int = 20
    eval_batch_size: int = 0
    peak_tflops: float = 0.0
    tpu: str = ""
    hbm_gb: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "logical_axis_rules", check_rules(self.logical_axis_rules))
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be a positive integer.")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype={self.dtype!r} is not one of {DTYPES}.")
        if self.remat not in REMAT_POLICIES:
            raise ConfigError(f"remat={self.remat!r} is not one of {REMAT_POLICIES}.")
        if self.loss_chunk < 0 or self.eval_batch_size < 0 or self.eval_every < 0 or self.eval_batches < 0:
            raise ConfigError("loss_chunk, eval_every, eval_batches and eval_batch_size must be >= 0 (0 = off / "
                              f"default); got {self.loss_chunk}, {self.eval_every}, {self.eval_batches}, "
                              f"{self.eval_batch_size}.")
        if self.batch_size % self.grad_accum_steps:
            raise ConfigError(f"batch_size={self.batch_size} is not divisible by grad_accum_steps="
                              f"{self.grad_accum_steps}; use a multiple of {self.grad_accum_steps}.")

    # ------------------------------------------------------------------ derived
    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.grad_accum_steps

    @property
    def eval_rows(self) -> int:
        """Sequences per validation batch (eval_batch_size, default batch_size)."""
        return self.eval_batch_size or self.batch_size

    def model_config(self, tokenizer_vocab: int) -> GPT2Config:
        return self.model.resolve(self.seq_len, tokenizer_vocab, dtype=self.dtype, remat=self.remat,
                                  loss_chunk=self.loss_chunk)

    # ------------------------------------------------------------------ conversion
    @classmethod
    def from_dict(cls, d: Any) -> "TrainConfig":
        """From a (nested) mapping or anything with `to_dict()` (an ml_collections ConfigDict).
        Unknown keys and values of the wrong type are ConfigErrors naming the key."""
        if hasattr(d, "to_dict"):
            d = d.to_dict()
        return _build(cls, d, "")

    @classmethod
    def coerce(cls, config: Any) -> "TrainConfig":
        return config if isinstance(config, cls) else cls.from_dict(config)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def _build(cls, d: Mapping[str, Any], where: str):
    """`cls(**d)` for a dataclass, recursing into dataclass-typed fields, checking keys and types."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"config key {where.rstrip('.') or 'config'!r} must be a group of fields, got {d!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key {where + unknown[0]!r}; known: {', '.join(sorted(fields))}.")
    kw = {}
    for name, value in d.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kw[name] = _build(hint, value, f"{where}{name}.")
        else:
            kw[name] = _coerce(value, hint, where + name)
    return cls(**kw)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` as the field's type: int/float/bool/str checked; "" -> None for optional strings."""
    args = typing.get_args(hint)
    if type(None) in args:  # X | None
        if value is None or value == "":
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # tuples / rules tables: checked by the dataclass
        return tuple(tuple(e) if isinstance(e, list) else e for e in value) if isinstance(value, list) else value
    raise ConfigError(f"config key {key!r} must be {getattr(hint, '__name__', hint)}, got {value!r}.")
