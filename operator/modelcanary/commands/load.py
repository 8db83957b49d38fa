"""`modelcanary load`: offer open-loop traffic and report per served version."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from modelcanary.commands.arguments import Commands, integer, number


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

    bodies = request_bodies(args.repo, args.model)
    report = asyncio.run(
        run_load(args.url, args.model, bodies, args.rate, args.duration, args.concurrency)
    )
    print(report.table())
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 0 if report.total.errors == 0 else 1
