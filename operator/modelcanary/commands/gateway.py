"""`modelcanary gateway`: the traffic-splitting reverse proxy in front of Triton."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from modelcanary.commands.arguments import Commands, integer, number, say
from modelcanary.errors import UsageError
from modelcanary.files import token_file

DEFAULT_TOKEN_FILE = Path(".modelcanary/gateway.token")


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "gateway",
        help="split traffic between model versions (Open Inference Protocol proxy)",
        description="Serve /v2/models/{m}/infer and send each request to one version by "
        "weight, with per-version metrics on /metrics and an admin API for the weights. "
        "Give either --config FILE or --model with --stable and --upstream.",
    )
    p.add_argument("--config", type=Path, help="YAML file with models, upstreams and limits")
    p.add_argument("--model", help="model name")
    p.add_argument("--stable", help="the stable version (gets all traffic unless --weights)")
    p.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="VERSION=URL",
        help="where a version is served, e.g. 2=http://127.0.0.1:8000; repeat",
    )
    p.add_argument("--weights", metavar="V=P,...", help="initial split, e.g. 1=90,2=10")
    p.add_argument(
        "--no-retry",
        action="store_true",
        help="do not retry on stable a request another version failed (default: retry, "
        "within a budget of 20%% of requests plus 10 per second over 10 s)",
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="address to listen on; port 0 picks a free one (default 127.0.0.1:8080)",
    )
    p.add_argument(
        "--grpc-listen",
        metavar="HOST:PORT",
        help="also serve KServe v2 gRPC on this address (port 0: a free one); needs each "
        "version's gRPC upstream (--grpc-upstream, or grpc_upstreams in the config)",
    )
    p.add_argument(
        "--grpc-upstream",
        action="append",
        default=[],
        metavar="VERSION=HOST:PORT",
        help="where a version's gRPC is served, e.g. 2=127.0.0.1:8001; repeat",
    )
    p.add_argument("--max-body-bytes", type=integer, help="largest request body (default 8 MiB)")
    p.add_argument("--timeout", type=number, help="upstream timeout in seconds (default 30)")
    p.add_argument(
        "--admin-token-file",
        type=Path,
        default=DEFAULT_TOKEN_FILE,
        help=f"bearer token of the admin API; created if missing (default {DEFAULT_TOKEN_FILE})",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from modelcanary.gateway.app import Gateway
    from modelcanary.gateway.config import load_config, parse_config
    from modelcanary.gateway.grpc_server import GrpcServer
    from modelcanary.gateway.server import GatewayServer

    if args.config is not None:
        if args.model or args.upstream:
            raise UsageError("give either --config or --model/--stable/--upstream, not both")
        config = load_config(args.config)
    else:
        config = parse_config({"models": {_required(args.model, "--model"): _route(args)}}, "flags")
    overrides: dict[str, object] = {}
    if args.max_body_bytes is not None:
        overrides["max_body_bytes"] = args.max_body_bytes
    if args.timeout is not None:
        overrides["upstream_timeout_s"] = args.timeout
    if args.no_retry:
        overrides["retry"] = {**config.retry.model_dump(), "enabled": False}
    if overrides:
        config = parse_config({**config.model_dump(), **overrides}, "flags")
    host, port = listen_address(args.listen)
    token = token_file(args.admin_token_file, "--admin-token-file")
    gateway = Gateway(config, token, say=say)
    server = GatewayServer(gateway, host, port)
    say(f"gateway listening on {server.url}")
    grpc_server = None
    if args.grpc_listen is not None:
        grpc_server = GrpcServer(gateway, *listen_address(args.grpc_listen, "--grpc-listen"))
        say(f"gateway gRPC (KServe v2) listening on {grpc_server.start()}")
    for name, route in config.models.items():
        weights = ", ".join(f"{v}={w}" for v, w in route.initial_weights().items())
        say(f"  {name}: {weights} (stable {route.stable}); {server.url}/v2/models/{name}/infer")
    say(f"  metrics  {server.url}/metrics")
    say(f"  admin    {server.url}/admin/models (bearer token in {args.admin_token_file})")
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal it caught
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if grpc_server is not None:
        grpc_server.stop()
    say("gateway stopped")
    return 0


def _required(value: str | None, flag: str) -> str:
    if not value:
        raise UsageError(f"{flag} is required without --config")
    return value


def _route(args: argparse.Namespace) -> dict[str, object]:
    upstreams = _pairs(args.upstream, "--upstream", "VERSION=URL")
    if not upstreams:
        raise UsageError("--upstream VERSION=URL is required without --config")
    route: dict[str, object] = {
        "stable": _required(args.stable, "--stable"),
        "upstreams": upstreams,
        "grpc_upstreams": _pairs(args.grpc_upstream, "--grpc-upstream", "VERSION=HOST:PORT"),
    }
    if args.weights:
        weights = {}
        for item in args.weights.split(","):
            version, sep, percent = item.partition("=")
            if not sep or not percent.strip().lstrip("-").isdigit():
                raise UsageError(f"--weights {args.weights!r}: {item!r} is not VERSION=PERCENT")
            weights[version.strip()] = int(percent)
        route["weights"] = weights
    return route


def _pairs(items: list[str], flag: str, form: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        version, sep, where = item.partition("=")
        if not sep or not version or not where:
            raise UsageError(f"{flag} {item!r} is not {form}")
        pairs[version] = where
    return pairs


def listen_address(text: str, flag: str = "--listen") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"{flag} {text!r} is not HOST:PORT")
    return host, int(port)
