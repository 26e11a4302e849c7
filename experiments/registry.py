"""Named experiments -> locked ml_collections configs, and `key=value` overrides with one clear
error per bad key or value."""
from __future__ import annotations

import ast
from typing import Callable, Sequence

import ml_collections

from experiments.configs import family, finetune, gpt2_paper, nanogpt, tiny
from gpt2_jax.errors import ConfigError

# name -> (factory(tpu) -> ConfigDict, one-line description, TPU slices with presets)
_EXPERIMENTS: dict[str, tuple[Callable[[str], ml_collections.ConfigDict], str, list[str]]] = {
    "tiny_test": (lambda tpu: tiny.tiny_test(), "2-layer d=64 model, 20 steps of Tiny Shakespeare (tests)", []),
    "tiny_shakespeare": (lambda tpu: tiny.tiny_shakespeare(),
                         "4-layer d=128 model on Tiny Shakespeare, a few minutes on a laptop CPU", []),
    "shakespeare_char": (lambda tpu: nanogpt.shakespeare_char(),
                         "nanoGPT's config/train_shakespeare_char.py: 6x384 char-level GPT, 5000 iters (val 1.4697)", []),
    "shakespeare_char_cpu": (lambda tpu: nanogpt.shakespeare_char_cpu(),
                             "nanoGPT's README CPU variant: 4x128 char-level GPT, 2000 iters (val ~1.88)", []),
    "finetune_shakespeare": (lambda tpu: finetune.finetune_shakespeare(),
                             "nanoGPT's fine-tune: gpt2 + GPT-2 BPE on Tiny Shakespeare, lr 3e-5, 20 steps", []),
}
for _size in gpt2_paper.SIZES:
    _EXPERIMENTS[f"gpt2_{_size}"] = (
        lambda tpu, _size=_size: gpt2_paper.get_config(_size, tpu),
        f"GPT-2 {_size.upper()} ({gpt2_paper.SIZES[_size][0]}) on OpenWebText, the paper's settings",
        gpt2_paper.slices(_size))

for _s in family.VARIANTS["full"].sizes:  # one size of `python -m experiments.family` (trains its own BPE)
    _EXPERIMENTS[f"family_{_s.name}"] = (
        lambda tpu, _n=_s.name: family.get_config(_n),
        f"family size {_s.name}: {_s.n_layer}x{_s.n_embd} ({_s.non_embedding_params:,} non-embedding params) "
        "on CBT's training books + Brown (experiments.family trains all four)", [])


def names() -> list[str]:
    return list(_EXPERIMENTS)


def describe() -> str:
    """One line per experiment (for --list)."""
    width = max(map(len, _EXPERIMENTS))
    lines = []
    for name, (_, text, tpus) in _EXPERIMENTS.items():
        presets = f"  [tpu presets: {', '.join(tpus)}]" if tpus else ""
        lines.append(f"{name:<{width}}  {text}{presets}")
    return "\n".join(lines)


def get_config(name: str, tpu: str = "", overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The config of experiment `name` (with the mesh preset for TPU slice `tpu`), overrides
    applied ("key.sub=value"), locked so a typo cannot add a field."""
    if name not in _EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; known: {', '.join(_EXPERIMENTS)} (see --list).")
    factory, _, tpus = _EXPERIMENTS[name]
    if tpu and not tpus:
        raise ConfigError(f"experiment {name!r} has no TPU presets; drop --tpu or pick one of "
                          f"{[n for n, e in _EXPERIMENTS.items() if e[2]]}.")
    config = factory(tpu)
    config.name = name
    config.lock()
    apply_overrides(config, overrides)
    return config


def _parse_value(text: str, current):
    """`text` as the type of the field's current value (literal syntax for lists/tuples/None)."""
    if isinstance(current, bool):
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"expected true/false, got {text!r}")
    if isinstance(current, int):
        return int(text.replace("_", ""))
    if isinstance(current, float):
        return float(text)
    if isinstance(current, str):
        return text
    value = ast.literal_eval(text)
    if isinstance(current, (list, tuple)) and not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list like ['a', 'b'], got {text!r}")
    return type(current)(value) if isinstance(current, (list, tuple)) else value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Apply "a.b=value" strings in order; ConfigError naming the key for unknown keys or values
    that do not parse as the field's type."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip().removeprefix("--").removeprefix("config.")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not KEY=VALUE, e.g. --config.total_steps=100.")
        node, parts = config, key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                where = ".".join(parts[:i]) or "config"
                known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                raise ConfigError(f"unknown config key {key!r}: {where} has no field {part!r}; known: "
                                  f"{', '.join(known)}.")
            if i < len(parts) - 1:
                node = node[part]
        field, current = parts[-1], node[parts[-1]]
        if isinstance(current, ml_collections.ConfigDict):
            raise ConfigError(f"config key {key!r} is a group; set one of its fields, e.g. "
                              f"{key}.{next(iter(current.keys()))}=...")
        try:
            value = _parse_value(text, current)
            node[field] = value
        except (ValueError, SyntaxError, TypeError) as e:
            raise ConfigError(f"bad value for config key {key!r}: {text!r} ({e}); current value is "
                              f"{current!r} ({type(current).__name__}).") from None


APPLICATION_KEYS = ("eval_after_training", "job")  # read by experiments/job.py, not by the library


def split(config: ml_collections.ConfigDict):
    """(TrainConfig, JobConfig) of an experiment config: the one place it enters the library typed."""
    from experiments.job import JobConfig
    from gpt2_jax.train.config import TrainConfig
    d = config.to_dict()
    app = {k: d.pop(k) for k in APPLICATION_KEYS}
    job = JobConfig(eval_tasks=tuple(app["eval_after_training"] or ()), eval_mode=app["job"]["eval_mode"],
                    eval_limit=int(app["job"]["eval_limit"]), prompts=tuple(app["job"]["prompts"]))
    return TrainConfig.from_dict(d), job


def train_config(name: str, tpu: str = "", overrides: Sequence[str] = ()):
    """The TrainConfig of experiment `name` (get_config, then split): what gpt2_jax.train.train takes."""
    return split(get_config(name, tpu, overrides))[0]


def presets(name: str) -> list[str]:
    """TPU slices with a mesh preset for experiment `name`."""
    if name not in _EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; known: {', '.join(_EXPERIMENTS)} (see --list).")
    return list(_EXPERIMENTS[name][2])
