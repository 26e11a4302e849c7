"""The library's exception types. Every user mistake raises a subclass of `UserError`, whose
message names the bad value, what was expected and the fix; the CLI prints it as one line and
exits with status 2."""


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
