"""`modelcanary fault`: make a locally served version fail or slow down, at run time."""

from __future__ import annotations

import argparse

from modelcanary.commands.arguments import Commands, directory, integer, number, say
from modelcanary.commands.serve import DEFAULT_RUN_DIR


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "fault",
        help="inject failures or latency into one locally served version",
        description="Write the fault file that the local Triton backend reads: the version "
        "fails --error-ratio of its requests and answers --latency-ms later. Triton's own "
        "failure and latency metrics show it. --clear turns it off.",
    )
    p.add_argument("--run-dir", type=directory, default=str(DEFAULT_RUN_DIR))
    p.add_argument("--model", required=True)
    p.add_argument("--version", type=integer, required=True)
    p.add_argument("--error-ratio", type=number, default=0.0, help="0..1 (default 0)")
    p.add_argument("--latency-ms", type=number, default=0.0, help="added latency (default 0)")
    p.add_argument("--clear", action="store_true", help="remove every fault of this version")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from modelcanary.serving.faults import FaultSpec, set_faults

    spec = FaultSpec() if args.clear else FaultSpec(args.error_ratio, args.latency_ms)
    path = set_faults(args.run_dir / "faults", args.model, args.version, spec)
    say(f"{args.model}:{args.version}: {spec.describe()} ({path})")
    return 0
