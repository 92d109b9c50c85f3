"""Exceptions that mean "the user asked for something we cannot do" (exit 2, no traceback).

Per-item failures are *not* exceptions: they are recorded as data (status + reason).
"""


class UsageError(Exception):
    """A user mistake: bad flag, missing file, malformed input file. CLI exits 2."""


class RecordError(UsageError):
    """An input record file failed validation; the message names record index and field."""
