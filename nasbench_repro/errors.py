"""Errors that reach the user as one line.

`UserError` is bad input (exit 2): an unknown name, a malformed value, missing data.
`RunFailure` is a run that started but could not finish honestly (exit 1): a NaN loss.
Both carry a message that names the problem and the fix, never a traceback.
"""


class UserError(Exception):
    """Bad input from the user or from a file the user supplied; the CLI exits 2."""

    exit_code = 2


class DataError(UserError):
    """A dataset file is missing, corrupt or not the official release."""


class RunFailure(Exception):
    """A run that cannot continue (diverged loss, ...); recorded as failed, the CLI exits 1."""

    exit_code = 1


class DivergenceError(RunFailure):
    """The loss became NaN or infinite."""
