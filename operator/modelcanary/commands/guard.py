"""`modelcanary guard`: the gateway's request checks in front of one Triton (the chart
runs it in every predictor pod; see modelcanary.gateway.guard)."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from modelcanary.commands.arguments import Commands, integer, number, say
from modelcanary.commands.gateway import listen_address
from modelcanary.errors import UsageError
from modelcanary.gateway.config import DEFAULT_MAX_BODY

if TYPE_CHECKING:
    from modelcanary.gateway.guard import RequestGuard
    from modelcanary.gateway.guard_grpc import GuardGrpcServer


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "guard",
        help="check inference requests before one Triton sees them (the chart's sidecar)",
        description="Serve Triton's inference, metadata and health paths in front of one "
        "Triton, answering 400 to requests that would crash or poison it (JSON nesting, "
        "repeated keys, shapes beyond the bytes sent or the model's max batch size, "
        "compressed bombs) and 404 to its control APIs.",
    )
    p.add_argument("--upstream", required=True, metavar="URL", help="Triton's HTTP address")
    p.add_argument(
        "--model", action="append", required=True, help="a model served; repeat for more"
    )
    p.add_argument(
        "--repository",
        type=Path,
        help="the Triton model repository, for each model's max batch size and public config",
    )
    p.add_argument(
        "--control-key-env",
        metavar="NAME",
        help="the environment variable holding Triton's control key, to ask Triton each "
        "model's max batch size (without --repository)",
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="address to listen on; port 0 picks a free one (default 127.0.0.1:8080)",
    )
    p.add_argument(
        "--grpc-upstream", metavar="HOST:PORT", help="Triton's gRPC address (with --grpc-listen)"
    )
    p.add_argument(
        "--grpc-listen",
        metavar="HOST:PORT",
        help="serve KServe v2 gRPC there too, checked as HTTP is, in front of --grpc-upstream",
    )
    p.add_argument(
        "--max-body-bytes",
        type=integer,
        default=DEFAULT_MAX_BODY,
        help=f"largest request body, also once decompressed (default {DEFAULT_MAX_BODY})",
    )
    p.add_argument("--timeout", type=number, default=30.0, help="Triton's timeout in seconds")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from modelcanary.asgi_server import AppServer
    from modelcanary.gateway.guard import RequestGuard

    if urlsplit(args.upstream).scheme not in ("http", "https"):
        raise UsageError(f"--upstream {args.upstream!r} is not an http:// URL")
    if (args.grpc_upstream is None) != (args.grpc_listen is None):
        raise UsageError("--grpc-listen and --grpc-upstream go together")
    if args.max_body_bytes <= 0 or args.timeout <= 0:
        raise UsageError("--max-body-bytes and --timeout must be positive")
    if args.repository is not None and not args.repository.is_dir():
        raise UsageError(f"--repository {args.repository}: no such directory")
    key = None
    if args.control_key_env is not None:
        key = os.environ.get(args.control_key_env)
        if not key:
            raise UsageError(
                f"--control-key-env {args.control_key_env}: the environment has no such variable"
            )
    host, port = listen_address(args.listen)
    app = RequestGuard(
        args.upstream, args.model, args.repository, args.max_body_bytes, args.timeout, key
    )
    grpc_server = None if args.grpc_listen is None else _grpc_server(args, app)
    server = AppServer(app, host, port, name="guard")
    say(f"guard listening on {server.url}")
    if grpc_server is not None:
        say(f"guard's gRPC listening on {grpc_server.start()}; Triton's at {args.grpc_upstream}")
    for model, limits in app.limits.items():
        batch = str(limits.max_batch_size)
        if limits.max_batch_size is None:
            batch = "asked from Triton" if key else "unknown (the sizes still bound requests)"
        say(f"  {model}: max batch size {batch}; Triton at {args.upstream}")
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the signal it caught
        server.run()
    if grpc_server is not None:
        grpc_server.stop()
    say("guard stopped")
    return 0


def _grpc_server(args: argparse.Namespace, app: RequestGuard) -> GuardGrpcServer:
    """The guard's gRPC server (not started), in front of --grpc-upstream."""
    listen_address(args.grpc_upstream, "--grpc-upstream")
    host, port = listen_address(args.grpc_listen, "--grpc-listen")
    try:
        from modelcanary.gateway.guard_grpc import GuardGrpc, GuardGrpcServer
    except ImportError as exc:
        raise UsageError(
            "--grpc-listen needs grpcio and tritonclient (the KServe v2 messages), "
            f"which this installation lacks: {exc}"
        ) from None
    service = GuardGrpc(app, args.grpc_upstream, args.repository)
    return GuardGrpcServer(service, host, port, args.max_body_bytes)
