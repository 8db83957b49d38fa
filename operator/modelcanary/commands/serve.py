"""`modelcanary serve`: the real Triton on CPU with chosen versions side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from modelcanary.commands.arguments import Commands, directory, int_list, say, stop_requested
from modelcanary.errors import UsageError

DEFAULT_RUN_DIR = Path(".modelcanary/serve")


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "serve",
        help="serve versions of a model on the real Triton server (CPU)",
        description="Start tritonserver on free loopback ports with the given versions of a "
        "model loaded side by side, print the endpoints, and run until Ctrl-C or SIGTERM.",
    )
    p.add_argument("--repo", type=Path, default=Path("model_repo"))
    p.add_argument("--model", required=True, help="model name in the repository")
    p.add_argument(
        "--versions",
        type=int_list,
        required=True,
        metavar="N,...",
        help="versions to load side by side, e.g. 1,2",
    )
    p.add_argument(
        "--run-dir",
        type=directory,
        default=str(DEFAULT_RUN_DIR),
        help=f"log, backends, fault files and serve.json (default {DEFAULT_RUN_DIR})",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from modelcanary.serving.triton_server import TritonServer

    if not args.repo.is_dir():
        raise UsageError(f"--repo {args.repo}: no such directory")
    stop = stop_requested()
    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    server = TritonServer(args.repo, run_dir, faults_dir=run_dir / "faults")
    try:
        endpoints = server.start()
        server.load(args.model, list(args.versions))
        state = {
            "model": args.model,
            "versions": list(args.versions),
            "http": endpoints.http,
            "grpc": endpoints.grpc,
            "metrics": endpoints.metrics,
            "faults_dir": str((run_dir / "faults").resolve()),
            "log": str(server.log_path),
            "pid": server.process.pid if server.process else None,
            "shm_prefix": server.shm_prefix,
        }
        (run_dir / "serve.json").write_text(json.dumps(state, indent=2) + "\n")
        versions = ", ".join(map(str, args.versions))
        say(f"Triton ready: {args.model} versions {versions}")
        say(f"  HTTP     {endpoints.http}/v2/models/{args.model}/versions/N/infer")
        say(f"  gRPC     {endpoints.grpc}")
        say(f"  metrics  {endpoints.metrics}")
        say(f"  log      {server.log_path}")
        say(
            f"  faults   modelcanary fault --run-dir {run_dir} --model {args.model} --version N ..."
        )
        say("Ctrl-C stops it.")
        while not stop.wait(0.5):
            if server.process is None or server.process.poll() is not None:
                raise UsageError(f"tritonserver exited unexpectedly: {server.log_tail()}")
    finally:
        code = server.stop()
        (run_dir / "serve.json").unlink(missing_ok=True)
    say(f"Triton stopped (exit code {code})")
    return 0
