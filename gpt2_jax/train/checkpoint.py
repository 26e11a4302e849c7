"""Checkpoints with orbax: async saves of params + optimizer state + a JSON description (model
config, tokenizer spec) under WORKDIR/checkpoints/<step>; resume from the newest readable one
onto any mesh; load just the params of a workdir for evals and export."""
from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import CheckpointError, TrainingError, UserError

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "checkpoints_corrupt"   # unreadable checkpoints are moved here, never deleted
_ITEMS = ("params", "opt_state", "meta")


def checkpoint_dir(workdir: str | epath.PathLike) -> epath.Path:
    """WORKDIR/checkpoints as an absolute path: orbax refuses relative ones, and a run resumed
    from another cwd must find the same directory. Remote paths (gs://...) are kept as they are."""
    path = epath.Path(workdir)
    if "://" not in str(workdir):
        path = path.absolute()
    return path / CHECKPOINT_DIR


def _silence_closed_loop_callbacks() -> None:
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


def _short(e: BaseException, limit: int = 120) -> str:
    """First line of an exception, without the long paths tensorstore puts in it."""
    text = (str(e).strip().splitlines() or [""])[0]
    text = re.sub(r'(local file )?"/[^"]*"', "", text)
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Checkpointer:
    """One run's CheckpointManager: save every step it is asked to, keep the newest `keep`."""

    def __init__(self, workdir: str | epath.PathLike, *, keep: int = 3, async_save: bool = True,
                 read_only: bool = False):
        self.workdir = epath.Path(workdir)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep or None, create=not read_only,
                                               enable_async_checkpointing=async_save,
                                               read_only=read_only)
        _silence_closed_loop_callbacks()
        self.manager = ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=_ITEMS)
        self._pending: int | None = None

    # ------------------------------------------------------------------ save
    def save(self, step: int, state: Any, meta: dict[str, Any]) -> bool:
        """Start an (async) save of `state` at `step`; False if that step is already saved. A
        failed write (disk full, no permission) raises TrainingError naming the step to resume from."""
        if step in self.manager.all_steps():
            return False
        args = ocp.args.Composite(params=ocp.args.StandardSave(state.params),
                                  opt_state=ocp.args.StandardSave(state.opt_state),
                                  meta=ocp.args.JsonSave(dict(meta, step=int(step))))
        self._pending = int(step)
        try:
            return bool(self.manager.save(step, args=args, force=True))
        except Exception as e:  # noqa: BLE001 - includes the previous async save's failure
            raise self._write_error(e) from None

    def wait(self) -> None:
        """Block until the pending async save is committed to disk."""
        try:
            self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise self._write_error(e) from None
        self._pending = None

    def _write_error(self, e: BaseException) -> TrainingError:
        done = [s for s in self.steps() if s != self._pending]
        kept = f"the newest complete checkpoint is step {done[-1]}" if done else "no checkpoint is complete"
        return TrainingError(
            f"writing the checkpoint of step {self._pending} to {checkpoint_dir(self.workdir)} failed "
            f"({_short(e)}); is the disk full or too small (file too large / no space)? {kept}. "
            "Free space and rerun the same command to resume from it.")

    def close(self) -> None:
        """Finish pending saves and release the manager; write errors here were already raised."""
        try:
            self.manager.close()
        except Exception as e:  # noqa: BLE001 - closing after a failed save re-raises its error
            log.warning("closing the checkpoint manager: %s", _short(e))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    # ------------------------------------------------------------------ restore
    def restore(self, step: int, abstract_state: Any,
                check: Callable[[int, dict[str, Any]], None] | None = None) -> tuple[Any, dict[str, Any]]:
        """The state saved at `step`, placed per the shardings in `abstract_state` (a TrainState of
        ShapeDtypeStructs), so it restores onto a different mesh or device count. `check(step, meta)`
        runs on the saved description first and may raise a UserError (e.g. another model)."""
        meta = dict(self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)
        if check is not None:
            check(step, meta)
        args = ocp.args.Composite(params=ocp.args.StandardRestore(abstract_state.params),
                                  opt_state=ocp.args.StandardRestore(abstract_state.opt_state))
        out = self.manager.restore(step, args=args)
        step_sh = abstract_state.step.sharding
        step_arr = jax.device_put(jnp.asarray(step, jnp.int32), step_sh) if step_sh else jnp.asarray(step)
        return abstract_state.replace(step=step_arr, params=out.params, opt_state=out.opt_state), meta

    def restore_latest(self, abstract_state: Any,
                       check: Callable[[int, dict[str, Any]], None] | None = None
                       ) -> tuple[Any | None, dict[str, Any] | None]:
        """Restore the newest readable checkpoint; an unreadable one is moved to checkpoints_corrupt/
        with a warning and the previous one is tried. (None, None) when there is none. Errors from
        `check` (a checkpoint of another model) propagate: those checkpoints are not corrupt."""
        for step in reversed(self.steps()):
            try:
                return self.restore(step, abstract_state, check)
            except UserError:
                raise
            except Exception as e:  # noqa: BLE001 - any read failure means "corrupt": fall back
                msg = (f"checkpoint at step {step} in {checkpoint_dir(self.workdir)} is unreadable "
                       f"({_short(e)}); moving it to {self.workdir / CORRUPT_DIR} and falling back "
                       "to the previous one.")
                log.warning(msg)
                import warnings
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                self._quarantine(step)
        return None, None

    def _quarantine(self, step: int) -> None:
        """Move a bad step directory aside (process 0), so the run can save that step again."""
        if jax.process_index() == 0:
            src = checkpoint_dir(self.workdir) / str(step)
            dst_root = self.workdir / CORRUPT_DIR
            dst_root.mkdir(parents=True, exist_ok=True)
            src.rename(dst_root / f"{step}-{int(time.time())}")
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"quarantine_{step}")
        self.manager.reload()


# ---------------------------------------------------------------------- reading a workdir
def _read_only_manager(workdir: str | epath.PathLike) -> ocp.CheckpointManager:
    path = checkpoint_dir(workdir)
    if not path.exists():
        raise CheckpointError(f"no checkpoints in {workdir}: {path} does not exist. Pass the --workdir "
                              "of a training run (it holds checkpoints/<step>/).")
    _silence_closed_loop_callbacks()
    options = ocp.CheckpointManagerOptions(read_only=True, create=False)
    return ocp.CheckpointManager(path, options=options, item_names=_ITEMS)


def _pick_step(manager: ocp.CheckpointManager, workdir, step: int | None) -> int:
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
                           f"cannot read its {what} ({_short(e, 80)}); {fix}.")


def _read_meta(manager, workdir, step: int) -> dict[str, Any]:
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
                             device: jax.Device | None = None) -> tuple[Any, GPT2Config]:
    """(params, GPT2Config) of a training run's newest (or `step`) checkpoint, on one device
    (default: the first local one). Reads only the params, not the optimizer state."""
    manager = _read_only_manager(workdir)
    try:
        step = _pick_step(manager, workdir, step)
        meta = _read_meta(manager, workdir, step)
        if "model_config" not in meta:
            raise CheckpointError(f"checkpoint {checkpoint_dir(workdir) / str(step)} has no model_config in "
                                  "its metadata; it was not written by gpt2_jax.train.")
        cfg = GPT2Config.from_dict(meta["model_config"])
        from gpt2_jax.model import param_shapes
        target = jax.sharding.SingleDeviceSharding(device or jax.local_devices()[0])
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=target),
                                param_shapes(cfg))
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
    """interop.load_checkpoint's hook: params + config of a workdir, with non-architecture config
    fields overridden (e.g. dtype="bfloat16", attention="xla", remat="none")."""
    params, cfg = load_params_from_workdir(workdir, step)
    return params, cfg.replace(**overrides) if overrides else cfg
