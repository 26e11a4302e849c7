"""Turn an experiment config (ml_collections ConfigDict; see experiments/configs/base.py for every
field) into what a run needs: model and optimizer configs, the mesh and rules table, the data
config, the tokenizer. All checks that can fail before compiling happen here, as ConfigErrors."""
from __future__ import annotations

import math
from typing import Any, Sequence

import jax
from etils import epath
from jax.sharding import Mesh

from gpt2_jax import sharding
from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import ConfigError
from gpt2_jax.train.optimizer import OptimizerConfig

TOKENIZER_DIR = "tokenizer"


def rules(config) -> tuple[tuple[str, Any], ...]:
    """The logical-axis rules table of the config (default sharding.DEFAULT_RULES)."""
    table = config.get("logical_axis_rules") or sharding.DEFAULT_RULES
    out = []
    for entry in table:
        if len(entry) != 2 or not isinstance(entry[0], str):
            raise ConfigError(f"logical_axis_rules entry {entry!r} must be (logical_name, mesh_axes) with "
                              f"mesh_axes None, one of {sharding.MESH_AXES} or a tuple of them.")
        axes = entry[1]
        names = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        bad = [a for a in names if a not in sharding.MESH_AXES]
        if bad:
            raise ConfigError(f"logical_axis_rules maps {entry[0]!r} to unknown mesh axes {bad}; "
                              f"use {sharding.MESH_AXES}.")
        out.append((entry[0], names[0] if len(names) == 1 else (names or None)))
    return tuple(out)


def mesh(config, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The (data, fsdp, tensor) mesh of config.mesh over all devices (ConfigError if it does not fit)."""
    m = config.mesh
    return sharding.make_mesh(int(m.data), int(m.fsdp), int(m.tensor), devices=devices)


def model_config(config, vocab_size: int) -> GPT2Config:
    """GPT2Config from config.model (a family name and/or explicit sizes), config.dtype/remat/loss_chunk."""
    m = config.model
    name = m.get("name", "custom") or "custom"
    if name != "custom":
        base = GPT2Config.from_name(name)
        sizes = dict(n_layer=base.n_layer, n_embd=base.n_embd, n_head=base.n_head)
    else:
        sizes = {}
    for key in ("n_layer", "n_embd", "n_head"):
        if m.get(key, 0):
            sizes[key] = int(m[key])
        elif key not in sizes:
            raise ConfigError(f"model.{key} is 0 and model.name is 'custom'; set model.{key} or a "
                              f"family name ({', '.join(GPT2Config.names())}).")
    vocab = int(m.get("vocab_size", 0)) or vocab_size
    if vocab < vocab_size:
        raise ConfigError(f"model.vocab_size={vocab} is smaller than the tokenizer's vocabulary "
                          f"({vocab_size}); use 0 (= the tokenizer's) or a larger value.")
    seq_len = int(config.seq_len)
    n_positions = int(m.get("n_positions", 0)) or max(seq_len, 1024 if name != "custom" else seq_len)
    if seq_len > n_positions:
        raise ConfigError(f"seq_len={seq_len} exceeds model.n_positions={n_positions}; lower seq_len "
                          "or raise n_positions.")
    return GPT2Config(vocab_size=vocab, n_positions=n_positions, dropout=float(m.get("dropout", 0.0)),
                      attention=m.get("attention", "auto"), scan_layers=bool(m.get("scan_layers", True)),
                      dtype=config.get("dtype", "float32"), remat=config.get("remat", "none"),
                      loss_chunk=int(config.get("loss_chunk", 0)), **sizes)


def optimizer_config(config) -> OptimizerConfig:
    return OptimizerConfig.from_mapping(config.optimizer.to_dict() if hasattr(config.optimizer, "to_dict")
                                        else config.optimizer)


def check_batch(config, dp: int, what: str = "") -> None:
    """batch_size must split into grad_accum_steps microbatches that split over the `dp` ways of the
    data-parallel mesh axes."""
    b, accum = int(config.batch_size), int(config.get("grad_accum_steps", 1))
    for name in ("total_steps", "batch_size", "seq_len", "log_every", "checkpoint_every",
                 "grad_accum_steps"):
        if int(config.get(name, 1)) <= 0:
            raise ConfigError(f"{name}={config.get(name)} must be a positive integer.")
    if b % accum:
        raise ConfigError(f"batch_size={b} is not divisible by grad_accum_steps={accum}; use a "
                          f"multiple of {accum}.")
    micro = b // accum
    if micro % dp:
        raise ConfigError(f"batch_size={b}{f' / grad_accum_steps={accum}' if accum > 1 else ''} = {micro} "
                          f"rows per step is not divisible by the data-parallel size {dp} (mesh "
                          f"data×fsdp{what}); use a batch_size that is a multiple of {dp * accum}.")
    eval_b = int(config.get("eval_batch_size", 0)) or b
    if eval_b % dp:
        raise ConfigError(f"eval_batch_size={eval_b} is not divisible by the data-parallel size {dp}; "
                          f"use a multiple of {dp}.")


def data_config(config, tokenizer_spec: str):
    """The data pipeline's DataConfig from config.data."""
    from gpt2_jax.data.sources import DataConfig
    d = config.data
    return DataConfig(source=d.source, text_field=d.get("text_field", "text"),
                      split_documents=d.get("split_documents", "file"),
                      val_fraction=float(d.get("val_fraction", 0.05)),
                      cache_dir=d.get("cache_dir") or None, tokenizer=tokenizer_spec,
                      tfds_data_dir=d.get("tfds_data_dir") or None,
                      tfds_download=bool(d.get("tfds_download", False)))


def tokenizer(config, workdir: str | epath.PathLike):
    """(Tokenizer, spec saved with checkpoints). With data.tokenizer_vocab_size > 0, a sentencepiece
    BPE of that size is trained once on the corpus files into WORKDIR/tokenizer/ (small corpora:
    a 50k vocabulary would dominate a tiny model's compute); its spec is workdir-relative."""
    from gpt2_jax.tokenizer import Tokenizer
    d = config.data
    size = int(d.get("tokenizer_vocab_size", 0))
    if size <= 0:
        return Tokenizer.load(d.tokenizer), d.tokenizer
    from gpt2_jax.data import sources
    rel = f"{TOKENIZER_DIR}/sp_bpe_{size}.model"
    path = epath.Path(workdir) / rel
    if jax.process_index() == 0 and not path.exists():
        src = sources.resolve_source(data_config(config, "gpt2"), d.get("data_dir") or None)
        if src.kind != "files":
            raise ConfigError(f"data.tokenizer_vocab_size={size} trains a tokenizer on text files, but "
                              f"data.source={d.source!r} is {src.kind}; set tokenizer_vocab_size=0 and "
                              "data.tokenizer to a trained model.")
        for f in src.files:  # the data pipeline's clear errors for empty or malformed files
            next(iter(sources.iter_file_documents(f, data_config(config, "gpt2"))), None)
        tmp = path.parent / f"tmp_{path.stem}"
        Tokenizer.train_sentencepiece([str(f) for f in src.files], str(tmp), vocab_size=size,
                                      num_threads=1)
        (path.parent / f"tmp_{path.stem}.vocab").unlink(missing_ok=True)
        (path.parent / f"tmp_{path.stem}.model").rename(path)  # atomic: readers never see a partial file
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("tokenizer_trained")
    return Tokenizer.load(str(path)), f"workdir:{rel}"


def dp_size(m: Mesh, rule_table) -> int:
    return sharding.data_parallel_size(m, rule_table)


def describe_mesh(m: Mesh) -> str:
    return " × ".join(f"{k}={v}" for k, v in m.shape.items()) + f" ({math.prod(m.shape.values())} devices)"
