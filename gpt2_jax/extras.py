"""Optional dependencies: a feature whose packages sit behind an extra imports them through
`require`, so a core install (`pip install gpt2-jax`) that uses it gets one clear error naming the
extra to install instead of a bare ImportError deep in a traceback."""
from __future__ import annotations

import importlib
from types import ModuleType

from gpt2_jax.errors import UserError

PACKAGE = "gpt2-jax"


class MissingExtra(UserError, ImportError):
    """A feature was used without the optional packages its extra installs."""


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """`import module`, or MissingExtra telling which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or module
        raise MissingExtra(f"{feature} needs the package {missing!r}, which the core install does not "
                           f"include; install it with: pip install '{PACKAGE}[{extra}]'") from None
