"""Checkpoint interop: OpenAI TF checkpoints and HF (safetensors / pytorch_model.bin) <-> params.

One table maps each of our parameters to its HF and OpenAI names. Every conversion is a reshape:
our c_attn kernel [D, 3, H, K] is HF's Conv1D weight [D, 3D] with columns ordered q|k|v, heads,
head_dim (the order HF splits them in), c_proj [H, K, D] is [D, D], and OpenAI's conv1d weights
carry an extra leading 1. Block tensors are stacked on our leading layer axis.
"""
from __future__ import annotations

import functools
import json
import os
import pathlib
import re
import sys
import urllib.error
import urllib.request
from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gpt2_jax import workdir
from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import CheckpointError
from gpt2_jax.extras import require
from gpt2_jax.model import param_shapes

Params = dict[str, Any]


class _Tensor(NamedTuple):
    path: tuple[str, ...]                    # under params; block tensors under params["h"]
    hf: str                                  # HF name; block tensors under "transformer.h.{i}."
    openai: str                              # OpenAI TF name; block tensors under "model/h{i}/"
    hf_shape: Callable[[GPT2Config], tuple[int, ...]]


def _d(c):
    return (c.n_embd,)


_TOP = (
    _Tensor(("wte",), "wte.weight", "wte", lambda c: (c.vocab_size, c.n_embd)),
    _Tensor(("wpe",), "wpe.weight", "wpe", lambda c: (c.n_positions, c.n_embd)),
    _Tensor(("ln_f", "scale"), "ln_f.weight", "ln_f/g", _d),
    _Tensor(("ln_f", "bias"), "ln_f.bias", "ln_f/b", _d),
)
_BLOCK = (
    _Tensor(("ln_1", "scale"), "ln_1.weight", "ln_1/g", _d),
    _Tensor(("ln_1", "bias"), "ln_1.bias", "ln_1/b", _d),
    _Tensor(("attn", "c_attn", "kernel"), "attn.c_attn.weight", "attn/c_attn/w", lambda c: (c.n_embd, 3 * c.n_embd)),
    _Tensor(("attn", "c_attn", "bias"), "attn.c_attn.bias", "attn/c_attn/b", lambda c: (3 * c.n_embd,)),
    _Tensor(("attn", "c_proj", "kernel"), "attn.c_proj.weight", "attn/c_proj/w", lambda c: (c.n_embd, c.n_embd)),
    _Tensor(("attn", "c_proj", "bias"), "attn.c_proj.bias", "attn/c_proj/b", _d),
    _Tensor(("ln_2", "scale"), "ln_2.weight", "ln_2/g", _d),
    _Tensor(("ln_2", "bias"), "ln_2.bias", "ln_2/b", _d),
    _Tensor(("mlp", "c_fc", "kernel"), "mlp.c_fc.weight", "mlp/c_fc/w", lambda c: (c.n_embd, c.mlp_dim)),
    _Tensor(("mlp", "c_fc", "bias"), "mlp.c_fc.bias", "mlp/c_fc/b", lambda c: (c.mlp_dim,)),
    _Tensor(("mlp", "c_proj", "kernel"), "mlp.c_proj.weight", "mlp/c_proj/w", lambda c: (c.mlp_dim, c.n_embd)),
    _Tensor(("mlp", "c_proj", "bias"), "mlp.c_proj.bias", "mlp/c_proj/b", _d),
)
_HF_BUFFERS = re.compile(r"(^|\.)attn\.(bias|masked_bias)$")  # causal-mask buffers, not weights


class _Entry(NamedTuple):
    path: tuple[str, ...]                    # flat path in params ("h", ...) for block tensors
    layer: int | None
    names: dict[str, str]                    # format ("hf" | "openai") -> tensor name
    shapes: dict[str, tuple[int, ...]]       # format -> tensor shape


def _entries(cfg: GPT2Config) -> list[_Entry]:
    """Every tensor of a checkpoint of `cfg`: our path (+ layer), HF and OpenAI names and shapes."""
    def entry(t, layer, hf, oa):
        shape = t.hf_shape(cfg)
        return _Entry(t.path if layer is None else ("h",) + t.path, layer, {"hf": hf, "openai": oa},
                      {"hf": shape, "openai": (1,) + shape if oa.endswith("/w") else shape})
    out = [entry(t, None, f"transformer.{t.hf}", f"model/{t.openai}") for t in _TOP]
    out += [entry(t, i, f"transformer.h.{i}.{t.hf}", f"model/h{i}/{t.openai}")
            for i in range(cfg.n_layer) for t in _BLOCK]
    return out


@functools.lru_cache(maxsize=16)
def _our_shapes(cfg: GPT2Config) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Our shape of each flat param path (block tensors: per layer), read off the model itself."""
    return {path: x.shape[1:] if path[0] == "h" else x.shape
            for path, x in traverse_util.flatten_dict(param_shapes(cfg)).items()}


def _export(params: Params, cfg: GPT2Config, fmt: str) -> dict[str, np.ndarray]:
    """Our params as {HF or OpenAI name: float32 array in that format's shape}."""
    flat = {k: np.array(x, np.float32) for k, x in traverse_util.flatten_dict(params).items()}  # writable copies
    return {e.names[fmt]: np.ascontiguousarray((flat[e.path] if e.layer is None else flat[e.path][e.layer])
                                               .reshape(e.shapes[fmt])) for e in _entries(cfg)}


def _assemble(fetch: Callable[[str], np.ndarray | None], cfg: GPT2Config, fmt: str, source: str) -> Params:
    """Params from a checkpoint, reading each tensor by name with `fetch`; checks names and shapes."""
    ours, flat = _our_shapes(cfg), {}
    for e in _entries(cfg):
        name, expected, x = e.names[fmt], e.shapes[fmt], fetch(e.names[fmt])
        if x is None:
            raise CheckpointError(f"{source}: tensor {name} (expected shape {expected}) is missing; the checkpoint "
                                  f"does not match its config (n_layer={cfg.n_layer}) or is incomplete.")
        if tuple(x.shape) != tuple(expected):
            raise CheckpointError(f"{source}: tensor {name} has shape {tuple(x.shape)} but the config (n_embd="
                                  f"{cfg.n_embd}, n_head={cfg.n_head}, vocab_size={cfg.vocab_size}, n_positions="
                                  f"{cfg.n_positions}) expects {expected}; use the config that was saved with "
                                  "these weights.")
        flat.setdefault(e.path, []).append(np.asarray(x, np.float32).reshape(ours[e.path]))
    return traverse_util.unflatten_dict({path: jnp.asarray(xs[0] if path[0] != "h" else np.stack(xs))
                                         for path, xs in flat.items()})


# ---------------------------------------------------------------------------------------- HF
def params_to_hf_state_dict(params: Params, cfg: GPT2Config) -> dict[str, np.ndarray]:
    """HF GPT2LMHeadModel state dict (as `save_pretrained` writes it: lm_head is tied, so omitted)."""
    return _export(params, cfg, "hf")


def hf_state_dict_to_params(sd: dict[str, Any], cfg: GPT2Config, source: str = "state dict") -> Params:
    """Params from an HF GPT-2 state dict (with or without the `transformer.` prefix)."""
    sd = {k if k.startswith("transformer.") or k.startswith("lm_head.") else f"transformer.{k}": v
          for k, v in sd.items() if not _HF_BUFFERS.search(k)}
    lm_head = sd.pop("lm_head.weight", None)
    known = {e.names["hf"] for e in _entries(cfg)}
    extra = sorted(set(sd) - known)
    if extra:
        raise CheckpointError(f"{source}: unexpected tensors {extra[:5]}{' ...' if len(extra) > 5 else ''} for a "
                              f"GPT-2 with n_layer={cfg.n_layer}; the weights do not match their config.")
    params = _assemble(sd.get, cfg, "hf", source)
    if lm_head is not None and not np.array_equal(np.asarray(lm_head, np.float32), np.asarray(params["wte"])):
        raise CheckpointError(f"{source}: lm_head.weight differs from transformer.wte.weight; GPT-2 ties them and "
                              "this model cannot load an untied LM head.")
    return params


_UNSUPPORTED = {  # HF option -> the only value our model implements
    "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
    "scale_attn_weights": True, "tie_word_embeddings": True, "add_cross_attention": False,
}


def cfg_from_hf_config(d: dict[str, Any], **overrides: Any) -> GPT2Config:
    """Our config from an HF config.json dict; rejects HF options the model does not implement."""
    if d.get("model_type", "gpt2") != "gpt2":
        raise CheckpointError(f"config.json has model_type={d['model_type']!r}; only 'gpt2' checkpoints load.")
    act = d.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):  # both are the tanh approximation GPT-2 uses
        raise CheckpointError(f"config.json activation_function={act!r} is not supported; GPT-2 uses 'gelu_new'.")
    for key, value in _UNSUPPORTED.items():
        if key in d and bool(d[key]) != value:
            raise CheckpointError(f"config.json sets {key}={d[key]!r}; only {value} is supported by gpt2_jax.")
    if "n_positions" not in d and "n_ctx" in d:
        d = {**d, "n_positions": d["n_ctx"]}
    missing = [k for k in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head") if k not in d]
    if missing:
        raise CheckpointError(f"config.json lacks {missing}; it is not a GPT-2 config.")
    # Dropout is a training choice, not part of the weights: loaded models start with it off (as
    # OpenAI checkpoints, which record none, do); pass dropout=... to fine-tune with it.
    kw = dict(vocab_size=d["vocab_size"], n_positions=d["n_positions"], n_embd=d["n_embd"], n_layer=d["n_layer"],
              n_head=d["n_head"], n_inner=d.get("n_inner"), layer_norm_epsilon=d.get("layer_norm_epsilon", 1e-5),
              initializer_range=d.get("initializer_range", 0.02))
    return GPT2Config(**{**kw, **overrides})


def hf_config_from_cfg(cfg: GPT2Config, eos_token_id: int | None = None) -> dict[str, Any]:
    """An HF config.json dict for `cfg` (GPT2LMHeadModel, gelu_new, tied embeddings)."""
    eos = eos_token_id if eos_token_id is not None else min(50256, cfg.vocab_size - 1)
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.n_positions, "n_ctx": cfg.n_positions,
        "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": cfg.n_inner,
        "layer_norm_epsilon": cfg.layer_norm_epsilon, "initializer_range": cfg.initializer_range,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True, "bos_token_id": eos, "eos_token_id": eos, "dtype": "float32",
    }


def _read_json(path: pathlib.Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}; re-save or re-download the checkpoint.") from None
    if not isinstance(d, dict):
        raise CheckpointError(f"{path} is not a JSON object; re-save or re-download the checkpoint.")
    return d


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file
    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError has no importable base across versions
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); it is truncated or corrupt: "
                              "re-download or re-save it.") from None


def _read_torch_bin(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{path} is a PyTorch checkpoint and reading it needs torch (pip install torch), "
                              "or convert it to model.safetensors first.") from None
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({e}); re-download it.") from None
    return {k: v.float().numpy() for k, v in sd.items() if hasattr(v, "float")}


def _hf_weight_files(d: pathlib.Path) -> list[pathlib.Path] | None:
    if (d / "model.safetensors").is_file():
        return [d / "model.safetensors"]
    if (d / "model.safetensors.index.json").is_file():  # sharded save_pretrained
        shards = sorted(set(_read_json(d / "model.safetensors.index.json").get("weight_map", {}).values()))
        return [d / s for s in shards]
    if (d / "pytorch_model.bin").is_file():
        return [d / "pytorch_model.bin"]
    return None


def load_hf(path: str | os.PathLike, **overrides: Any) -> tuple[Params, GPT2Config]:
    """(params, cfg) from an HF dir: config.json + model.safetensors (or shards, or pytorch_model.bin).
    `overrides` set non-architecture config fields, e.g. attention="xla" or dtype="bfloat16"."""
    d = pathlib.Path(path).expanduser()
    files = _hf_weight_files(d)
    if not (d / "config.json").is_file() or not files:
        raise CheckpointError(f"{d} is not an HF checkpoint dir: it needs config.json and model.safetensors "
                              "(or pytorch_model.bin).")
    cfg = cfg_from_hf_config(_read_json(d / "config.json"), **overrides)
    sd: dict[str, np.ndarray] = {}
    for f in files:
        if not f.is_file():
            raise CheckpointError(f"{f} is listed in the safetensors index but missing; re-download the checkpoint.")
        sd.update(_read_safetensors(f) if f.suffix == ".safetensors" else _read_torch_bin(f))
    return hf_state_dict_to_params(sd, cfg, source=str(d)), cfg


def _output_dir(out_dir: str | os.PathLike) -> pathlib.Path:
    """`out_dir`, created; a clear error if it names an existing file."""
    d = pathlib.Path(out_dir).expanduser()
    if d.exists() and not d.is_dir():
        raise CheckpointError(f"output path {d} is a file, not a directory; pass a new or existing directory "
                              "(the checkpoint is written as several files inside it).")
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_hf(params: Params, cfg: GPT2Config, out_dir: str | os.PathLike) -> pathlib.Path:
    """Write config.json + model.safetensors that `transformers.GPT2LMHeadModel.from_pretrained` loads."""
    from safetensors.numpy import save_file
    d = _output_dir(out_dir)
    (d / "config.json").write_text(json.dumps(hf_config_from_cfg(cfg), indent=2) + "\n")
    save_file(params_to_hf_state_dict(params, cfg), str(d / "model.safetensors"), metadata={"format": "pt"})
    return d


# ------------------------------------------------------------------------------------ OpenAI
def _openai_prefix(d: pathlib.Path) -> str:
    """The checkpoint prefix in an OpenAI model dir (the `checkpoint` file's, else the one *.index)."""
    state = d / "checkpoint"
    if state.is_file():
        m = re.search(r'model_checkpoint_path:\s*"([^"]+)"', state.read_text())
        if m:
            prefix = pathlib.Path(m.group(1))
            prefix = prefix if prefix.is_absolute() else d / prefix
            if pathlib.Path(f"{prefix}.index").is_file():
                return str(prefix)
    indexes = sorted(d.glob("*.index"))
    if len(indexes) != 1:
        raise CheckpointError(f"{d} should hold one TF checkpoint (model.ckpt.index), found {len(indexes)}: "
                              f"{[p.name for p in indexes]}.")
    return str(indexes[0])[: -len(".index")]


def _tf():
    """TensorFlow, imported on first use (and without its C++ info logs unless asked for)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return require("tensorflow", extra="tf", feature="reading and writing OpenAI TF checkpoints")


def load_openai(path: str | os.PathLike, **overrides: Any) -> tuple[Params, GPT2Config]:
    """(params, cfg) from an OpenAI model dir: hparams.json + TF checkpoint model.ckpt.*."""
    d = pathlib.Path(path).expanduser()
    if not (d / "hparams.json").is_file():
        raise CheckpointError(f"{d} is not an OpenAI checkpoint dir: hparams.json is missing.")
    hp = _read_json(d / "hparams.json")
    missing = [k for k in ("n_vocab", "n_ctx", "n_embd", "n_head", "n_layer") if k not in hp]
    if missing:
        raise CheckpointError(f"{d / 'hparams.json'} lacks {missing}; it is not a GPT-2 hparams file.")
    cfg = GPT2Config(**{**dict(vocab_size=hp["n_vocab"], n_positions=hp["n_ctx"], n_embd=hp["n_embd"],
                               n_head=hp["n_head"], n_layer=hp["n_layer"]), **overrides})
    prefix = _openai_prefix(d)
    tf = _tf()
    corrupt = "it is truncated or corrupt: re-download it"
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = set(reader.get_variable_to_shape_map())
    except tf.errors.OpError as e:
        raise CheckpointError(f"cannot read the TF checkpoint {prefix} ({e.message.splitlines()[0]}); "
                              f"{corrupt}.") from None

    def fetch(name):
        if name not in names:
            return None
        try:
            return reader.get_tensor(name)
        except (tf.errors.OpError, IndexError, ValueError) as e:  # a short data file raises IndexError
            raise CheckpointError(f"cannot read tensor {name} from the TF checkpoint {prefix} ({e}); "
                                  f"{corrupt}.") from None
    return _assemble(fetch, cfg, "openai", prefix), cfg


def save_openai(params: Params, cfg: GPT2Config, out_dir: str | os.PathLike,
                vocab_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Write hparams.json + a TF checkpoint with OpenAI's variable names (model/h0/attn/c_attn/w ...);
    with `vocab_dir`, also copy encoder.json and vocab.bpe so the dir is a complete model release."""
    d = _output_dir(out_dir)
    tf = _tf()
    hp = dict(n_vocab=cfg.vocab_size, n_ctx=cfg.n_positions, n_embd=cfg.n_embd, n_head=cfg.n_head,
              n_layer=cfg.n_layer)
    (d / "hparams.json").write_text(json.dumps(hp, indent=2) + "\n")
    tensors = _export(params, cfg, "openai")
    tf.raw_ops.SaveV2(prefix=str(d / "model.ckpt"), tensor_names=list(tensors),
                      shape_and_slices=[""] * len(tensors), tensors=list(tensors.values()))
    (d / "checkpoint").write_text('model_checkpoint_path: "model.ckpt"\n'
                                  'all_model_checkpoint_paths: "model.ckpt"\n')
    if vocab_dir is not None:
        for name in ("encoder.json", "vocab.bpe"):
            (d / name).write_bytes((pathlib.Path(vocab_dir).expanduser() / name).read_bytes())
    return d


# ------------------------------------------------------------------------------ released models
# OpenAI's original TF release, and the same weights as HF safetensors (what `load_checkpoint("gpt2")`
# fetches: no TensorFlow needed). Both come with the GPT-2 BPE files.
RELEASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models"
RELEASES = {"gpt2": "124M", "gpt2-medium": "355M", "gpt2-large": "774M", "gpt2-xl": "1558M"}
RELEASE_FILES = ("checkpoint", "hparams.json", "encoder.json", "vocab.bpe", "model.ckpt.index",
                 "model.ckpt.data-00000-of-00001")
HF_URL = "https://huggingface.co/openai-community/{name}/resolve/main/{file}"
# HF file -> local name (vocab.json / merges.txt are encoder.json / vocab.bpe under HF's names)
HF_FILES = {"config.json": "config.json", "model.safetensors": "model.safetensors",
            "vocab.json": "encoder.json", "merges.txt": "vocab.bpe"}
CACHE_ENV = "GPT2_JAX_CACHE"


def cache_dir() -> pathlib.Path:
    """Where released models are downloaded: $GPT2_JAX_CACHE, else ~/.cache/gpt2_jax."""
    return pathlib.Path(os.environ.get(CACHE_ENV) or "~/.cache/gpt2_jax").expanduser()


def release_name(name: str) -> str | None:
    """The canonical released name (gpt2 ... gpt2-xl) for a name or size (124M ...), else None."""
    key = str(name).lower()
    if key in RELEASES:
        return key
    return next((n for n, s in RELEASES.items() if s.lower() == key), None)


def _download(url: str, dest: pathlib.Path) -> None:
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            total, done, shown = int(r.headers.get("Content-Length") or 0), 0, -1
            while chunk := r.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                pct = 100 * done // total if total else -1
                if pct // 10 != shown // 10 or pct == 100:
                    shown = pct
                    print(f"\rdownloading {dest.name}: {done / 1e6:.1f} MB"
                          + (f" ({pct}%)" if total else ""), end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot download {url} ({getattr(e, 'reason', e)}); check the network, or put the "
                              f"file there by hand as {dest} (or set ${CACHE_ENV} to a dir that holds it).") from None
    tmp.replace(dest)


def download_release(name: str, fmt: str = "hf") -> pathlib.Path:
    """The local dir of a released model (gpt2 ... gpt2-xl), downloading missing files into the
    cache: `fmt="hf"` the HF safetensors + tokenizer files, `fmt="openai"` OpenAI's TF release."""
    canonical = release_name(name)
    if canonical is None:
        raise CheckpointError(f"unknown released model {name!r}; known: {', '.join(RELEASES)}.")
    if fmt == "hf":
        d = cache_dir() / "hf" / canonical
        d.mkdir(parents=True, exist_ok=True)
        for remote, local in HF_FILES.items():
            if not (d / local).is_file():
                _download(HF_URL.format(name=canonical, file=remote), d / local)
        return d
    size = RELEASES[canonical]
    d = cache_dir() / size
    d.mkdir(parents=True, exist_ok=True)
    for f in RELEASE_FILES:
        if not (d / f).is_file():
            _download(f"{RELEASE_URL}/{size}/{f}", d / f)
    return d


# ------------------------------------------------------------------------------ any checkpoint
def is_hf_dir(d: pathlib.Path) -> bool:
    return (d / "config.json").is_file() and _hf_weight_files(d) is not None


def is_openai_dir(d: pathlib.Path) -> bool:
    return (d / "hparams.json").is_file() and any(d.glob("*.index"))


def load_checkpoint(path_or_name: str | os.PathLike, **overrides: Any) -> tuple[Params, GPT2Config]:
    """(params, cfg) from an HF dir, an OpenAI dir, a gpt2_jax training workdir, or a released model
    name (gpt2, gpt2-medium, gpt2-large, gpt2-xl: its HF safetensors, downloaded once into the
    cache dir with the GPT-2 BPE files). A remote path (gs://...) must be a training workdir."""
    if "://" in str(path_or_name):
        if workdir.is_workdir(path_or_name):
            return workdir.load_for_inference(path_or_name, **overrides)
        raise CheckpointError(f"{str(path_or_name)!r} holds no checkpoints/: a remote path must be a gpt2_jax "
                              "training workdir; copy HF or OpenAI checkpoints to a local directory first.")
    p = pathlib.Path(path_or_name).expanduser()
    if p.is_dir():
        if is_hf_dir(p):
            return load_hf(p, **overrides)
        if is_openai_dir(p):
            return load_openai(p, **overrides)
        if workdir.is_workdir(p):
            return workdir.load_for_inference(p, **overrides)
    elif not p.exists() and release_name(str(path_or_name)) is not None:
        return load_hf(download_release(str(path_or_name)), **overrides)
    what = (f"directory holding {sorted(x.name for x in p.iterdir())[:8]}" if p.is_dir()
            else "file" if p.exists() else "path that does not exist")
    raise CheckpointError(
        f"{str(path_or_name)!r} (a {what}) is neither an HF dir (config.json + model.safetensors|pytorch_model.bin), "
        "an OpenAI dir (hparams.json + model.ckpt.index), a gpt2_jax training workdir, nor a released model "
        f"name ({', '.join(RELEASES)}); pass one of those.")
