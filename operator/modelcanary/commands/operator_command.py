"""`modelcanary operator`: the ModelCanary operator (the container's entry point)."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from modelcanary.alerts.profile import PROFILES
from modelcanary.commands.arguments import Commands, integer
from modelcanary.errors import UsageError


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "operator",
        help="run the ModelCanary operator in a cluster",
        description="Watch ModelCanary resources in a namespace and drive each rollout with "
        "the engine: Prometheus for the checks, the InferenceService or HTTPRoute for the "
        "traffic, the resource's status for the state, Alertmanager for notifications.",
    )
    p.add_argument("--namespace", required=True)
    p.add_argument("--prometheus", required=True, help="Prometheus base URL")
    p.add_argument("--source", default="triton", choices=("triton", "knative", "istio"))
    p.add_argument(
        "--window",
        default=PROFILES["production"]["window"],
        help="rate window of the recording rules (default: the production profile's)",
    )
    p.add_argument("--tick", default="10s", help="how often a tick begins")
    p.add_argument(
        "--stalled-after",
        metavar="DURATION",
        help="the liveness probe (/livez) fails once the tick loop has not gone round for "
        "this long (default: 5 ticks, at least 60s)",
    )
    p.add_argument("--metrics-port", type=integer, default=8080)
    p.add_argument("--webhook-port", type=integer, default=8081)
    p.add_argument("--webhook-token-file", type=Path, help="bearer token Alertmanager sends")
    p.add_argument("--alertmanager", help="Alertmanager base URL for notifications")
    p.add_argument(
        "--model-repo",
        type=Path,
        help="mounted model repository for the checks before traffic (default: read each "
        "version's files from the InferenceService's storageUri)",
    )
    p.add_argument(
        "--comparator",
        metavar="URL",
        help="the shadow comparator (modelcanary comparator) whose admin API starts and stops "
        "each rollout's shadow comparison (default: no shadow phase)",
    )
    p.add_argument(
        "--comparator-token-file", type=Path, help="bearer token of the comparator's admin API"
    )
    p.add_argument(
        "--leader-election",
        metavar="LEASE",
        help="name of the Lease that elects the acting replica (needed with several replicas)",
    )
    p.add_argument("--identity", help="this replica's name in the Lease (default: hostname)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from modelcanary.durations import parse_duration
    from modelcanary.kube import operator

    try:
        window, tick = parse_duration(args.window), parse_duration(args.tick)
    except ValueError as exc:
        raise UsageError(f"--window/--tick: {exc}") from None
    try:
        stalled = parse_duration(args.stalled_after) if args.stalled_after else None
    except ValueError as exc:
        raise UsageError(f"--stalled-after: {exc}") from None
    if stalled is not None and stalled <= 0:
        raise UsageError(f"--stalled-after {args.stalled_after}: must be longer than 0s")
    token = _token(args.webhook_token_file, "--webhook-token-file")
    comparator_token = _token(args.comparator_token_file, "--comparator-token-file")
    if args.comparator and not comparator_token:
        raise UsageError("--comparator needs --comparator-token-file")
    webhook_port = args.webhook_port
    if webhook_port == args.metrics_port:
        webhook_port = args.metrics_port + 1
    config = operator.OperatorConfig(
        namespace=args.namespace,
        prometheus=args.prometheus,
        source=args.source,
        window_s=window,
        tick_s=tick,
        webhook_port=webhook_port,
        metrics_port=args.metrics_port,
        webhook_token=token,
        alertmanager=args.alertmanager,
        model_repo=args.model_repo,
        leader_lease=args.leader_election,
        identity=args.identity or socket.gethostname(),
        comparator=args.comparator,
        comparator_token=comparator_token,
        stalled_after_s=stalled,
    )
    operator.run(config)
    return 0


def _token(path: Path | None, flag: str) -> str:
    """The token in a file ("" without one)."""
    if path is None:
        return ""
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror}") from None
