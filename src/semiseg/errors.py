"""Error types that the command line turns into exit codes and one-line messages."""

from __future__ import annotations

from typing import Any


class SemisegError(Exception):
    """Base class of every error a user can cause; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class ConfigError(SemisegError):
    """A bad configuration value, unknown key, or bad command-line usage (exit code 2)."""

    exit_code = 2


class DatasetError(SemisegError):
    """A dataset that fails its checks: missing files, shape or label problems (exit code 3).

    ``problems`` lists every problem found, so a user fixes them all in one go.
    """

    exit_code = 3

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


def validation_summary(exc: Any) -> str:
    """A pydantic ``ValidationError`` as ``field: message; ...`` (without pydantic's "Value error, " prefix)."""
    parts = []
    for e in exc.errors():
        where = ".".join(map(str, e["loc"]))
        parts.append((f"{where}: " if where else "") + e["msg"].removeprefix("Value error, "))
    return "; ".join(parts)
