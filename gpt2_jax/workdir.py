"""A training workdir, read-only: its orbax checkpoints' params placed on one device or a mesh,
the JSON description saved beside them (model config, tokenizer spec) and the tokenizer. What
loading a workdir for sampling, evals and export needs; writing checkpoints is train.checkpoint's
job. Paths go through etils.epath, so gs:// workdirs work where the filesystem is available."""
from __future__ import annotations

import json
import re
from typing import Any

import jax
from etils import epath

from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import CheckpointError
from gpt2_jax.extras import require

CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "checkpoints_corrupt"   # unreadable checkpoints are moved here, never deleted
ITEMS = ("params", "opt_state", "meta")


def checkpoint_dir(workdir: str | epath.PathLike) -> epath.Path:
    """WORKDIR/checkpoints as an absolute path: orbax refuses relative ones, and a run resumed
    from another cwd must find the same directory. Remote paths (gs://...) are kept as they are."""
    path = epath.Path(workdir)
    if "://" not in str(workdir):
        path = path.absolute()
    return path / CHECKPOINT_DIR


def silence_closed_loop_callbacks() -> None:
    """After a failed orbax read, tensorstore still completes the reads that were in flight and
    their callbacks hit orbax's already-closed event loop, printing 'Event loop is closed'
    tracebacks via sys.unraisablehook (even before the error reaches us). Installed before any
    checkpoint I/O; drops exactly those, anything else goes to the previous hook."""
    import sys
    previous = sys.unraisablehook
    if getattr(previous, "_gpt2_jax_filter", False):
        return

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        previous(unraisable)

    hook._gpt2_jax_filter = True
    sys.unraisablehook = hook


def short_error(e: BaseException, limit: int = 120) -> str:
    """First line of an exception, without the long paths tensorstore puts in it."""
    text = (str(e).strip().splitlines() or [""])[0]
    text = re.sub(r'(local file )?"/[^"]*"', "", text)
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."



def _ocp():
    return require("orbax.checkpoint", extra="train", feature="reading a training workdir's checkpoints")


def _read_only_manager(workdir: str | epath.PathLike):
    path = checkpoint_dir(workdir)
    if not path.exists():
        raise CheckpointError(f"no checkpoints in {workdir}: {path} does not exist. Pass the --workdir "
                              "of a training run (it holds checkpoints/<step>/).")
    silence_closed_loop_callbacks()
    ocp = _ocp()
    options = ocp.CheckpointManagerOptions(read_only=True, create=False)
    return ocp.CheckpointManager(path, options=options, item_names=ITEMS)


def _pick_step(manager, workdir, step: int | None) -> int:
    steps = sorted(manager.all_steps())
    if not steps:
        raise CheckpointError(f"no complete checkpoint in {checkpoint_dir(workdir)}; train longer than "
                              "checkpoint_every steps or wait for the first save to finish.")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise CheckpointError(f"no checkpoint at step {step} in {checkpoint_dir(workdir)}; "
                              f"available steps: {steps}.")
    return step


def _unreadable(manager, workdir, step: int, what: str, e: BaseException) -> CheckpointError:
    """A short error for a checkpoint that cannot be read, pointing at an older readable step."""
    older = [s for s in sorted(manager.all_steps()) if s < step]
    fix = (f"load the previous one with step={older[-1]} (checkpoints/{older[-1]}), or move "
           f"checkpoints/{step} away" if older else "retrain; there is no older checkpoint")
    return CheckpointError(f"{checkpoint_dir(workdir).name}/{step} in {workdir} is corrupt or truncated: "
                           f"cannot read its {what} ({short_error(e, 80)}); {fix}.")


def _read_meta(manager, workdir, step: int) -> dict[str, Any]:
    ocp = _ocp()
    try:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    except Exception as e:  # noqa: BLE001 - e.g. JSONDecodeError of a damaged metadata file
        what = "meta (not valid JSON)" if isinstance(e, json.JSONDecodeError) else "meta"
        raise _unreadable(manager, workdir, step, what, e) from None
    if not isinstance(meta, dict):
        raise _unreadable(manager, workdir, step, "meta", ValueError("not a JSON object"))
    return dict(meta)


def checkpoint_metadata(workdir: str | epath.PathLike, step: int | None = None) -> dict[str, Any]:
    """The JSON saved beside a checkpoint: model_config (GPT2Config dict), tokenizer spec, step,
    experiment name. `step=None` = the newest."""
    manager = _read_only_manager(workdir)
    try:
        step = _pick_step(manager, workdir, step)
        return dict(_read_meta(manager, workdir, step), step=step)
    finally:
        manager.close()


def tokenizer_spec(workdir: str | epath.PathLike, step: int | None = None) -> str:
    """The `Tokenizer.load` spec of a run; paths saved relative to the workdir are resolved."""
    spec = checkpoint_metadata(workdir, step).get("tokenizer", "gpt2")
    if spec.startswith("workdir:"):
        return str(epath.Path(workdir) / spec[len("workdir:"):])
    return spec


def load_params_from_workdir(workdir: str | epath.PathLike, step: int | None = None,
                             device: jax.Device | None = None, *, shardings: Any = None) -> tuple[Any, GPT2Config]:
    """(params, GPT2Config) of a training run's newest (or `step`) checkpoint, on one device
    (default: the first local one), or with `shardings(cfg)` -> a pytree of target shardings
    straight onto a mesh (each process reads only its shards). Reads only the params."""
    manager = _read_only_manager(workdir)
    try:
        step = _pick_step(manager, workdir, step)
        meta = _read_meta(manager, workdir, step)
        if "model_config" not in meta:
            raise CheckpointError(f"checkpoint {checkpoint_dir(workdir) / str(step)} has no model_config in "
                                  "its metadata; it was not written by gpt2_jax.train.")
        cfg = GPT2Config.from_dict(meta["model_config"])
        from gpt2_jax.model import param_shapes
        if shardings is None:
            single = jax.sharding.SingleDeviceSharding(device or jax.local_devices()[0])
            target = jax.tree.map(lambda _: single, param_shapes(cfg))
        else:
            target = shardings(cfg)
        abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                param_shapes(cfg), target)
        ocp = _ocp()
        try:
            out = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract)))
        except Exception as e:  # noqa: BLE001
            raise _unreadable(manager, workdir, step, "params", e) from None
        return out.params, cfg
    finally:
        manager.close()


def is_workdir(path: str | epath.PathLike) -> bool:
    """True if `path` looks like a training workdir (holds checkpoints/)."""
    return (epath.Path(path) / CHECKPOINT_DIR).is_dir()


def load_for_inference(workdir: str | epath.PathLike, step: int | None = None,
                       **overrides: Any) -> tuple[Any, GPT2Config]:
    """Params + config of a workdir (as interop.load_checkpoint gives them), with non-architecture
    config fields overridden (e.g. dtype="bfloat16", attention="xla", remat="none")."""
    params, cfg = load_params_from_workdir(workdir, step)
    return params, cfg.replace(**overrides) if overrides else cfg
