"""`modelcanary demo`: the whole loop on one machine (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from modelcanary.commands.arguments import Commands, directory, number, say, stop_requested
from modelcanary.errors import UsageError


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "demo",
        help="run three local rollouts end to end and write a report",
        description="Build the example repository if needed, start the local stack (Triton, "
        "gateway, Prometheus, Alertmanager), drive steady load, and run three rollouts: "
        "digits 2 promoted, digits 3 rolled back for injected errors, and again for "
        "injected latency. Prints a live view and a summary, writes report.html, and stops "
        "everything. Exit 0 when every rollout ends as expected.",
    )
    p.add_argument("--repo", type=Path, default=Path("model_repo"))
    p.add_argument("--run-dir", type=directory, default=".modelcanary/demo")
    p.add_argument("--rate", type=number, default=40.0, help="requests per second (40)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from modelcanary.examples import digits
    from modelcanary.local.demo import Demo

    if args.rate <= 0:
        raise UsageError("--rate must be positive")
    digits.build(args.repo, say=say)
    stop = stop_requested()
    return Demo(args.repo, args.run_dir, args.rate, say).run(stop)
