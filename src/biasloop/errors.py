"""User-facing errors.

Every error a user can cause (a bad config, a bad data file, a bad CLI flag, a
missing package) is a :class:`BiasloopError`. Its message is a single line that
names the field or file, the value given and what would be valid; the CLI prints
it without a traceback.
"""

from __future__ import annotations


class BiasloopError(Exception):
    """An error caused by user input, reported as one line without a traceback."""


class ConfigError(BiasloopError):
    """A configuration value is unknown, of the wrong type or out of range."""


class DataError(BiasloopError):
    """A data file is missing, malformed or inconsistent."""


class RunStoreError(BiasloopError):
    """A run directory is missing, inconsistent or cannot be written."""


class MissingDependencyError(BiasloopError):
    """An optional package needed for the requested feature is not installed."""


class RunInterrupted(BiasloopError):
    """The run was stopped by a signal (SIGTERM); ``biasloop resume`` continues it."""


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped, so errors stay one line."""
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)
