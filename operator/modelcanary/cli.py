"""The `modelcanary` command line: serving and canary rollouts for ML models.

Exit codes: 0 success, 1 a check failed (parity, checksum, golden samples), 2 bad input,
130 interrupted. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from modelcanary import __version__
from modelcanary.commands import (
    alerts,
    comparator,
    compare,
    crd,
    dashboard,
    demo,
    examples,
    export,
    fault,
    gateway,
    guard,
    load,
    operator_command,
    repo,
    rollout,
    serve,
    triton,
    up,
)
from modelcanary.commands.arguments import Parser
from modelcanary.errors import ModelcanaryError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="modelcanary",
        description="Serving and canary rollouts for ML models on Triton, KServe and Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"modelcanary {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    for command in (
        export,
        repo,
        compare,
        examples,
        triton,
        serve,
        fault,
        gateway,
        guard,
        comparator,
        load,
        alerts,
        up,
        rollout,
        dashboard,
        demo,
        crd,
        operator_command,
    ):
        command.add(commands)
    return parser


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM takes the same path as Ctrl-C, so a terminated export rolls back too."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        return handler(args)
    except ModelcanaryError as exc:
        print(f"modelcanary {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a file or directory the command could not use; never a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"modelcanary {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"modelcanary {args.command}: interrupted; nothing was changed", file=sys.stderr)
        return 130
