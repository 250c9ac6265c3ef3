"""User-facing errors: each carries a one-paragraph message naming the cause and the fix."""

from __future__ import annotations


class WhywarmupError(Exception):
    """An error the user can fix; the CLI prints its message (no traceback) and exits with `exit_code`."""

    exit_code = 1


class ConfigError(WhywarmupError):
    """params.yaml is invalid. Raised before anything is trained or logged."""

    exit_code = 2

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} error(s); nothing was trained or logged. Fix these and re-run:"]
        lines += [f"  {path}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


class DataError(WhywarmupError):
    """A dataset is missing, cannot be downloaded, or is corrupted."""


class TrackingError(WhywarmupError):
    """The MLflow tracking store cannot be reached or written."""
