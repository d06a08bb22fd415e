"""Errors that mean "the user's input is wrong" (exit status 2) as opposed to bugs."""

from __future__ import annotations

import os


class LunaInputError(Exception):
    """Bad input: a one-line message naming the file (and line, for CSVs).

    The command line prints ``str(err)`` on stderr and exits with status 2.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None,
                 line: int | None = None):
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.message = message
        super().__init__(self._format())

    def __reduce__(self):
        # keep path and line across processes (prepcache workers, DataLoader workers)
        return (type(self), (self.message, self.path, self.line))

    def _format(self) -> str:
        if self.path is None:
            return self.message
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"
