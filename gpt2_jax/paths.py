"""Where data lives: one setting, `$GPT2_JAX_DATA_DIR` (CI sets it to ../shared/data)."""
from __future__ import annotations

import os
import pathlib

from gpt2_jax.errors import DataError

ENV_VAR = "GPT2_JAX_DATA_DIR"


def data_dir(override: str | os.PathLike | None = None) -> pathlib.Path:
    """The data directory: `override` if given, else $GPT2_JAX_DATA_DIR, else ./data."""
    root = override or os.environ.get(ENV_VAR) or "data"
    return pathlib.Path(root).expanduser()


def data_file(relpath: str, override: str | os.PathLike | None = None, *, source: str = "") -> pathlib.Path:
    """Path of a required data file; a clear error naming the path and where to get it if absent."""
    path = data_dir(override) / relpath
    if not path.is_file():
        hint = f" Get it from {source}." if source else ""
        raise DataError(f"data file not found: {path}. Set --data-dir or ${ENV_VAR} to the directory "
                        f"that holds {relpath}.{hint}")
    return path
