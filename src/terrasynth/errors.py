"""Errors a user can fix. The CLI prints them on one line and exits with status 2."""

from __future__ import annotations

from pathlib import Path


class TerrasynthError(Exception):
    """Base class for errors caused by input, configuration or environment, not by a bug."""


class InputError(TerrasynthError):
    """A file or folder the user gave is missing, unreadable or inconsistent.

    ``InputError(path, problem, fix)`` names the file, what is wrong and how to fix it.
    ``InputError(message)`` (one argument) is the whole message with no path: it is how
    ``torch.utils.data.DataLoader`` re-raises an error from a worker process, so a bad file found by a worker
    stays an ``InputError``.
    """

    def __init__(self, path: str | Path | None, problem: str | None = None, fix: str | None = None):
        if problem is None:
            problem, path = "" if path is None else str(path), None
        self.path = None if path is None else Path(path)
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path is not None else ""
        message = f"{where}{problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.path, self.problem, self.fix))
