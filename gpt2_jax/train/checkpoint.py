"""Checkpoints with orbax: async saves of params + optimizer state + a JSON description (model
config, tokenizer spec) under WORKDIR/checkpoints/<step>; resume from the newest readable one
onto any mesh; load just the params of a workdir for evals and export."""
from __future__ import annotations

import logging
import time
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import CheckpointError

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "checkpoints_corrupt"   # unreadable checkpoints are moved here, never deleted
_ITEMS = ("params", "opt_state", "meta")


def checkpoint_dir(workdir: str | epath.PathLike) -> epath.Path:
    return epath.Path(workdir) / CHECKPOINT_DIR


class Checkpointer:
    """One run's CheckpointManager: save every step it is asked to, keep the newest `keep`."""

    def __init__(self, workdir: str | epath.PathLike, *, keep: int = 3, async_save: bool = True,
                 read_only: bool = False):
        self.workdir = epath.Path(workdir)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep or None, create=not read_only,
                                               enable_async_checkpointing=async_save,
                                               read_only=read_only)
        self.manager = ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=_ITEMS)

    # ------------------------------------------------------------------ save
    def save(self, step: int, state: Any, meta: dict[str, Any]) -> bool:
        """Start an (async) save of `state` at `step`; False if that step is already saved."""
        if step in self.manager.all_steps():
            return False
        args = ocp.args.Composite(params=ocp.args.StandardSave(state.params),
                                  opt_state=ocp.args.StandardSave(state.opt_state),
                                  meta=ocp.args.JsonSave(dict(meta, step=int(step))))
        return bool(self.manager.save(step, args=args, force=True))

    def wait(self) -> None:
        """Block until the pending async save is committed to disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    # ------------------------------------------------------------------ restore
    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """The state saved at `step`, placed per the shardings in `abstract_state` (a TrainState of
        ShapeDtypeStructs), so it restores onto a different mesh or device count."""
        args = ocp.args.Composite(params=ocp.args.StandardRestore(abstract_state.params),
                                  opt_state=ocp.args.StandardRestore(abstract_state.opt_state),
                                  meta=ocp.args.JsonRestore())
        out = self.manager.restore(step, args=args)
        step_sh = abstract_state.step.sharding
        step_arr = jax.device_put(jnp.asarray(step, jnp.int32), step_sh) if step_sh else jnp.asarray(step)
        return abstract_state.replace(step=step_arr, params=out.params, opt_state=out.opt_state), dict(out.meta)

    def restore_latest(self, abstract_state: Any) -> tuple[Any | None, dict[str, Any] | None]:
        """Restore the newest readable checkpoint; an unreadable one is moved to checkpoints_corrupt/
        with a warning and the previous one is tried. (None, None) when there is none."""
        for step in reversed(self.steps()):
            try:
                return self.restore(step, abstract_state)
            except Exception as e:  # noqa: BLE001 - any read failure means "corrupt": fall back
                msg = (f"checkpoint at step {step} in {checkpoint_dir(self.workdir)} is unreadable "
                       f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); moving it "
                       f"to {self.workdir / CORRUPT_DIR} and falling back to the previous one.")
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


def checkpoint_metadata(workdir: str | epath.PathLike, step: int | None = None) -> dict[str, Any]:
    """The JSON saved beside a checkpoint: model_config (GPT2Config dict), tokenizer spec, step,
    experiment name. `step=None` = the newest."""
    manager = _read_only_manager(workdir)
    step = _pick_step(manager, workdir, step)
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    return dict(meta, step=step)


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
    step = _pick_step(manager, workdir, step)
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
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
        raise CheckpointError(f"cannot read params of {checkpoint_dir(workdir) / str(step)}: "
                              f"{type(e).__name__}: {e}. Pass step= of another checkpoint.") from None
    return out.params, cfg


def is_workdir(path: str | epath.PathLike) -> bool:
    """True if `path` looks like a training workdir (holds checkpoints/)."""
    return (epath.Path(path) / CHECKPOINT_DIR).is_dir()


def load_for_inference(workdir: str | epath.PathLike, step: int | None = None,
                       **overrides: Any) -> tuple[Any, GPT2Config]:
    """interop.load_checkpoint's hook: params + config of a workdir, with non-architecture config
    fields overridden (e.g. dtype="bfloat16", attention="xla", remat="none")."""
    params, cfg = load_params_from_workdir(workdir, step)
    return params, cfg.replace(**overrides) if overrides else cfg
