"""`modelcanary load`: offer open-loop traffic and report per served version."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from modelcanary.commands.arguments import Commands, integer, number, stop_requested
from modelcanary.errors import UsageError
from modelcanary.files import write_atomically


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "load",
        help="send open-loop traffic built from a model's golden samples",
        description="Send requests at a fixed rate to URL/v2/models/NAME/infer (a gateway or "
        "a Triton server) and report the achieved rate, errors and latency percentiles per "
        "serving version (from the gateway's x-modelcanary-version response header).",
    )
    p.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--model", required=True)
    p.add_argument("--rate", type=number, required=True, help="requests per second")
    p.add_argument("--duration", type=number, required=True, help="seconds")
    p.add_argument("--concurrency", type=integer, default=64, help="most requests in flight")
    p.add_argument("--repo", type=Path, default=Path("model_repo"), help="where golden samples are")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from modelcanary.load.generator import request_bodies, run_load

    if args.json is not None:  # refused now, not after the whole run
        _check_report_path(args.json)
    bodies = request_bodies(args.repo, args.model)
    stop = stop_requested()  # SIGINT or SIGTERM ends the run early, with its report
    report = asyncio.run(
        run_load(
            args.url, args.model, bodies, args.rate, args.duration, args.concurrency, stop=stop
        )
    )
    print(report.table(), flush=True)
    if args.json:
        try:
            write_atomically(args.json, json.dumps(report.to_json(), indent=2) + "\n")
        except OSError as exc:
            raise UsageError(f"--json {args.json}: {exc.strerror}; the report is above") from None
    if stop.is_set():
        print(
            f"modelcanary load: stopped after {report.duration_s:.1f} s; the report covers "
            "what was sent",
            file=sys.stderr,
        )
        return 130
    return 0 if report.total.errors == 0 else 1


def _check_report_path(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"--json {path}: is a directory")
    if not path.parent.is_dir():
        raise UsageError(f"--json {path}: no directory {path.parent}")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"--json {path}: {path.parent} is not writable")
