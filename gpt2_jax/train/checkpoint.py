"""Checkpoints with orbax: async saves of params + optimizer state + a JSON description (model
config, tokenizer spec) under WORKDIR/checkpoints/<step>, and resuming from the newest readable
one onto any mesh. Reading a workdir's params for evals and export is gpt2_jax.workdir."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

from gpt2_jax.errors import TrainingError, UserError
from gpt2_jax.workdir import (CORRUPT_DIR, ITEMS, checkpoint_dir, short_error,
                              silence_closed_loop_callbacks)

log = logging.getLogger(__name__)

class Checkpointer:
    """One run's CheckpointManager: save every step it is asked to, keep the newest `keep`."""

    def __init__(self, workdir: str | epath.PathLike, *, keep: int = 3, async_save: bool = True,
                 read_only: bool = False):
        self.workdir = epath.Path(workdir)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep or None, create=not read_only,
                                               enable_async_checkpointing=async_save,
                                               read_only=read_only)
        silence_closed_loop_callbacks()
        self.manager = ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=ITEMS)
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
            f"({short_error(e)}); is the disk full or too small (file too large / no space)? {kept}. "
            "Free space and rerun the same command to resume from it.")

    def close(self) -> None:
        """Finish pending saves and release the manager; write errors here were already raised."""
        try:
            self.manager.close()
        except Exception as e:  # noqa: BLE001 - closing after a failed save re-raises its error
            log.warning("closing the checkpoint manager: %s", short_error(e))

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
                       f"({short_error(e)}); moving it to {self.workdir / CORRUPT_DIR} and falling back "
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


