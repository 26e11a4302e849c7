"""A run's starting weights from `config.init_from` (fine-tuning): a released name (gpt2 ...
gpt2-xl, downloaded where there is a network), an HF dir, an OpenAI TF dir or another run's
workdir, read with interop's / workdir's loaders, checked against the run's model, vocabulary-
padded, and placed leaf by leaf onto the run's mesh with its param shardings. The optimizer state
always starts fresh. (Resuming from the run's own workdir takes precedence: train.loop.)"""
from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gpt2_jax import interop, workdir as workdir_lib
from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import CheckpointError
from gpt2_jax.model import param_shapes
from gpt2_jax.train import step as step_lib

log = logging.getLogger(__name__)

SOURCES_HELP = (f"a released model ({', '.join(interop.RELEASES)}), an HF dir (config.json + model.safetensors), "
                "an OpenAI dir (hparams.json + model.ckpt.*) or a gpt2_jax training workdir")


def _sizes(cfg: GPT2Config) -> str:
    return (f"n_layer={cfg.n_layer}, n_embd={cfg.n_embd}, n_head={cfg.n_head}, n_positions={cfg.n_positions}, "
            f"vocab_size={cfg.vocab_size}")


def fit_params(params: Any, source_cfg: GPT2Config, model: GPT2Config, source: str) -> dict[tuple[str, ...], Any]:
    """The flat leaves of `params` (a checkpoint of `source_cfg`) in the shapes of `model`:
    CheckpointError naming the first tensor whose shape differs, except wte with fewer rows than
    model.vocab_size, which is padded. Consumes `params` (leaves are popped, not copied)."""
    want = traverse_util.flatten_dict(param_shapes(model))
    have = traverse_util.flatten_dict(params)
    if set(have) != set(want):
        missing = sorted("/".join(p) for p in set(want) - set(have))
        raise CheckpointError(f"init_from={source!r}: its params lack {missing[:3]}; it is not a GPT-2 of "
                              f"this library's layout.")
    out = {}
    first = {"wte": 0, "wpe": 1, "ln_f": 2}  # report the most telling mismatch: the embedding tables
    for path, spec in sorted(want.items(), key=lambda kv: first.get(kv[0][0], 3)):
        x = have.pop(path)
        if path == ("wte",) and x.shape[0] < spec.shape[0] and x.shape[1:] == spec.shape[1:]:
            x = pad_vocab(np.asarray(x, np.float32), spec.shape[0])
        elif tuple(x.shape) != tuple(spec.shape):
            raise CheckpointError(
                f"init_from={source!r}: tensor {'/'.join(path)} has shape {tuple(x.shape)} but this run's model "
                f"({_sizes(model)}) expects {tuple(spec.shape)}; set model.* to the checkpoint's sizes "
                f"({_sizes(source_cfg)}) or pick a checkpoint of this model.")
        out[path] = x
    return out


def pad_vocab(wte_VD: np.ndarray, vocab_size: int) -> np.ndarray:
    """wte with rows appended up to `vocab_size` (e.g. 50257 -> 50304 for faster matmuls), each the
    MEAN of the existing rows, not zeros: the tied head gives a padded id the logit h·mean(wte) =
    the mean of the real logits, well below their log-sum-exp, so the padded ids take a sliver of
    probability. A zero row would give them logit 0, far above GPT-2's typical (large negative)
    logits, and swamp the softmax at step 1.
    (HF's resize_token_embeddings samples its new rows around the same mean.)"""
    extra = vocab_size - wte_VD.shape[0]
    mean = wte_VD.astype(np.float64).mean(axis=0, keepdims=True).astype(np.float32)
    return np.concatenate([wte_VD, np.repeat(mean, extra, axis=0)], axis=0)


def _place(flat: dict[tuple[str, ...], Any], shardings: Any) -> Any:
    """Each leaf onto its sharding (each process builds only its own shards) and the source leaf
    dropped before the next, so a host holds at most one extra leaf beyond what was loaded."""
    target = traverse_util.flatten_dict(shardings)
    out = {}
    for path in list(flat):
        x = flat.pop(path)
        host = np.asarray(x, np.float32)
        out[path] = jax.make_array_from_callback(host.shape, target[path], lambda idx, h=host: h[idx])
        del host
        if isinstance(x, jax.Array):
            x.delete()
        del x
    return traverse_util.unflatten_dict(out)


def _same_shapes(a: GPT2Config, b: GPT2Config) -> bool:
    return jax.tree.map(lambda x: x.shape, param_shapes(a)) == jax.tree.map(lambda x: x.shape, param_shapes(b))


def load_params(source: str, model: GPT2Config, shardings: Any) -> Any:
    """The params of checkpoint `source` as `model`'s, placed with `shardings` (a params pytree of
    NamedShardings). A workdir of the same model restores straight onto the mesh (orbax reads each
    process's shards only); anything else is read by interop.load_checkpoint on the host."""
    try:
        if workdir_lib.is_workdir(source):
            saved = GPT2Config.from_dict(workdir_lib.checkpoint_metadata(source)["model_config"])
            if _same_shapes(saved, model):
                params, _ = workdir_lib.load_params_from_workdir(source, shardings=lambda _: shardings)
                return params
        params, cfg = interop.load_checkpoint(source)
    except CheckpointError as e:
        raise CheckpointError(f"init_from={source!r}: {e}") from None
    return _place(fit_params(params, cfg, model, source), shardings)


def init_state(run, source: str) -> step_lib.TrainState:
    """A step-0 TrainState of `run` (a train.build.Run) with the params of `source` and a fresh
    optimizer state, every leaf with the run's state shardings."""
    sh = run.state_shardings
    params = load_params(source, run.model, sh.params)
    opt_state = jax.jit(run.optimizer.init, out_shardings=sh.opt_state)(params)
    step = jax.jit(lambda: jnp.zeros((), jnp.int32), out_shardings=sh.step)()
    log.info("initialised from %s (%s); the optimizer state starts fresh", source, _sizes(run.model))
    return step_lib.TrainState(step=step, params=params, opt_state=opt_state)
