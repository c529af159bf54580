"""Expected failures. Raise `RecsysError` with one line naming the file, the line/row and
what was expected; `recsys_cli.main` prints it as `Error: ...` and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class RecsysError(Exception):
    """A user-facing failure: bad input, missing file, impossible option."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(RecsysError):
    """Bad input data. Build it with `InputError.at(path, line, expected)`."""

    exit_code = 2

    @classmethod
    def at(cls, path: str | Path, where: str | int | None, what: str) -> "InputError":
        loc = f"{path}"
        if where is not None:
            loc += f", line {where}" if isinstance(where, int) else f", {where}"
        return cls(f"{loc}: {what}")
