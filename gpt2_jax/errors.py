"""What the library tells its users: exception types, and one-time notes about fallbacks. Every
user mistake raises a subclass of `UserError`, whose message names the bad value, what was
expected and the fix; the CLI prints it as one line and exits with status 2. A fallback to a
slower or different path (a kernel, a mesh layout, a prefetcher) is logged once by `log_once`."""
import functools
import logging
import re
import sys
from typing import Callable

_log = logging.getLogger("gpt2_jax")


@functools.lru_cache(maxsize=None)
def log_once(message: str, level: int = logging.WARNING) -> None:
    """Log `message` the first time it is asked for (at `level`), never again in this process."""
    _log.log(level, message)



class UserError(Exception):
    """A mistake in what the user passed (flags, files, configs): reported without a traceback."""


class ConfigError(UserError, ValueError):
    """An invalid or unknown configuration value or model name."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, unreadable, or does not match its config."""


class TokenizerError(UserError, ValueError):
    """Missing or corrupt vocabulary files, or ids outside the vocabulary."""


class DataError(UserError, ValueError):
    """A missing, empty or malformed data file (message carries the path and line number)."""


class InputError(UserError, ValueError):
    """Bad arguments to a library call, e.g. a prompt longer than the model's context."""


class TrainingError(RuntimeError):
    """A run that cannot continue (e.g. a non-finite loss); the last good checkpoint is kept."""


def one_line(e: BaseException) -> str:
    return re.sub(r"\s*\n\s*", " ", str(e).strip())


def report_errors(run: Callable[[], int | None], prog: str,
                  on_error: Callable[[int, str], int] | None = None) -> int:
    """Call `run()` and return its exit status: a UserError prints `PROG: error: ...` and gives 2,
    a TrainingError `PROG: training stopped: ...` and 1; nothing else is caught (a bug keeps its
    traceback). `on_error(status, summary)` then decides the status (distributed.fail_fast exits a
    multi-process run at once). The one error path of every entry point (gpt2-jax,
    experiments.main, the harness)."""
    try:
        return int(run() or 0)
    except UserError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        status, summary = 2, f"{type(e).__name__}: {one_line(e)}"
    except TrainingError as e:  # the message says what was kept and what to do
        print(f"{prog}: training stopped: {one_line(e)}", file=sys.stderr)
        status, summary = 1, f"{type(e).__name__}: {one_line(e)}"
    return on_error(status, summary) if on_error else status
