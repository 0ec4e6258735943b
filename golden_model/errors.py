"""Error types shared by the golden model and the compiler.

Every error a user can provoke with bad input is a ``BadInputError``: the CLI
turns it into one line on stderr and exit code 2. A ``MismatchError`` is a
verification failure (exit code 1).
"""

from __future__ import annotations


class CimgenError(Exception):
    """Base of all errors cimgen reports to a user (never a bare traceback)."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class BadInputError(CimgenError):
    """Malformed model, config, program or data: exit code 2."""

    exit_code = 2


class MismatchError(CimgenError):
    """A verification compared two executors and they differ: exit code 1."""

    exit_code = 1
