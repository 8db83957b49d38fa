"""Argument types and output helpers shared by the commands."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn, TypeAlias

from modelcanary.rollout.intents import BY_ACTION, VERBS, IntentAction


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# What `add_subparsers()` returns; subscripted for mypy only (not at run time).
Commands: TypeAlias = "argparse._SubParsersAction[Parser]"


def integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    return value


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def directory(text: str) -> Path:
    """A directory that exists or can be made: no file in the way (`--run-dir`)."""
    path = Path(text)
    in_the_way = next((p for p in (path, *path.parents) if p.exists()), None)
    if in_the_way is not None and not in_the_way.is_dir():
        shown = repr(text) if in_the_way == path else f"{text!r}: {in_the_way}"
        raise argparse.ArgumentTypeError(f"{shown} is not a directory")
    return path


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None


def label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def stop_requested() -> threading.Event:
    """An event set by SIGINT or SIGTERM. Long-running commands check it once their
    servers are ready, so a signal never reaches Triton while it loads models."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop


def say(line: str) -> None:
    """Progress on stdout, flushed so that piped logs show it as it happens."""
    sys.stdout.write(line + "\n")  # one write: lines from other threads never interleave
    sys.stdout.flush()


def add_intent_verbs(
    verbs: Commands,
    handler: Callable[[argparse.Namespace], int],
    target: Callable[[argparse.ArgumentParser], object],
    parents: Sequence[Parser] = (),
) -> None:
    """One command per verb of the intent table, alike in `modelcanary` and `kubectl canary`:
    promote [--full], rollback --reason, pause, resume, retry."""
    for verb in VERBS:
        if verb.action == "promote_full":  # `promote --full`
            continue
        parser = verbs.add_parser(verb.name, help=verb.help.replace("%", "%%"), parents=parents)
        target(parser)
        if verb.action == "promote":
            full = BY_ACTION["promote_full"].help.replace("%", "%%")
            parser.add_argument("--full", action="store_true", help=full)
        parser.add_argument("--reason", required=verb.reason_required, default="")
        parser.set_defaults(handler=handler, action=verb.action, full=False)


def intent_action(args: argparse.Namespace) -> IntentAction:
    """The intent the parsed verb asks for (`promote --full` is its own)."""
    action: IntentAction = "promote_full" if args.action == "promote" and args.full else args.action
    return action
