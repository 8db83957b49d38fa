"""`modelcanary fault`: make a locally served version fail or slow down, at run time."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from modelcanary.commands.arguments import Commands, directory, integer, number, say
from modelcanary.errors import UsageError, one_line

# where `modelcanary up` and `modelcanary serve` run by default, and what each writes there
RUN_DIRS = (Path(".modelcanary/up"), Path(".modelcanary/serve"))
STACK_FILES = (("up.json", "triton_http"), ("serve.json", "http"))  # file, Triton's URL in it


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "fault",
        help="inject failures or latency into one locally served version",
        description="Write the fault file that the local Triton backend reads: the version "
        "fails --error-ratio of its requests and answers --latency-ms later. Triton's own "
        "failure and latency metrics show it. --clear turns it off. Only a model and "
        "version that the running stack (`modelcanary up` or `serve`) serves are accepted.",
    )
    p.add_argument(
        "--run-dir",
        type=directory,
        help="the stack's run directory (default: .modelcanary/up, else .modelcanary/serve)",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--version", type=integer, required=True)
    p.add_argument("--error-ratio", type=number, default=0.0, help="0..1 (default 0)")
    p.add_argument("--latency-ms", type=number, default=0.0, help="added latency (default 0)")
    p.add_argument("--clear", action="store_true", help="remove every fault of this version")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from modelcanary.serving.faults import FaultSpec, check_fault_target, check_served, set_faults

    spec = (FaultSpec() if args.clear else FaultSpec(args.error_ratio, args.latency_ms)).validate()
    check_fault_target(args.model, args.version)
    triton, faults_dir, models = running_stack(args.run_dir)
    check_served(triton, args.model, args.version, models)
    path = set_faults(faults_dir, args.model, args.version, spec)
    say(f"{args.model}:{args.version}: {spec.describe()} ({path})")
    return 0


def running_stack(run_dir: Path | None) -> tuple[str, Path, list[str]]:
    """Triton's URL, the fault directory and the models of the stack in `run_dir` (by
    default, in the first of `up`'s and `serve`'s run directories that has one)."""
    from modelcanary.local.controller import stack_models

    places = (run_dir,) if run_dir is not None else RUN_DIRS
    for where in places:
        for name, key in STACK_FILES:
            path = where / name
            if not path.is_file():
                continue
            try:
                found = json.loads(path.read_text())
                models = stack_models(found)
                return str(found[key]), Path(found["faults_dir"]), models
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"{path}: not readable: {one_line(exc)}") from None
    raise UsageError(
        f"no running stack in {' or '.join(map(str, places))} (no up.json or serve.json); "
        "start one with `modelcanary up` or `modelcanary serve`, or pass --run-dir"
    )
