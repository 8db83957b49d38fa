"""Errors a user can cause, each mapped to one line on stderr and an exit code."""

from __future__ import annotations

from pydantic import ValidationError


class ModelcanaryError(Exception):
    """Base class: the message is shown to the user as one line, without a traceback."""

    exit_code = 1


class UsageError(ModelcanaryError):
    """Bad input: an argument, a file or a model that cannot be used as given (exit 2)."""

    exit_code = 2


class VerificationError(ModelcanaryError):
    """A check failed: parity between runtimes, a checksum, a golden sample (exit 1)."""

    exit_code = 1


class NotAllowed(ModelcanaryError):
    """The thing acted on does not exist, or the action does not fit its state (exit 1)."""

    exit_code = 1


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as `Type: first line of its message`, for one-line error reports."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe_validation_errors(
    exc: ValidationError, empty: str = "(top level)", limit: int | None = None
) -> str:
    """pydantic's errors as `path.to.field: reason; ...`, the way every parser reports them."""
    parts = []
    for error in exc.errors()[:limit]:
        location = ".".join(str(part) for part in error["loc"]) or empty
        parts.append(f"{location}: {str(error['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)
