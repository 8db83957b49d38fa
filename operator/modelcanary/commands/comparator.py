"""`modelcanary comparator`: the shadow comparator alone, fed by KServe's inference logger."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from modelcanary.commands.arguments import Commands, integer, number, say
from modelcanary.commands.gateway import listen_address
from modelcanary.errors import UsageError
from modelcanary.files import token_file

DEFAULT_TOKEN_FILE = Path(".modelcanary/comparator.token")


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "comparator",
        help="compare the canary's answers with stable's, fed by KServe's inference logger",
        description="Receive the stable predictor's inference-logger CloudEvents, pair each "
        "request with its response, send a share of the requests to the canary predictor "
        "and compare the answers; comparisons are started and stopped on the admin API "
        "(PUT/DELETE /admin/shadow/{model}) and counted on /metrics.",
    )
    p.add_argument(
        "--repository",
        required=True,
        metavar="PATH|URI",
        help="the model repository whose manifests give output kinds and profiles: a "
        "directory, or a storage URI KServe reads (s3://, gs://, pvc://, ...)",
    )
    p.add_argument(
        "--listen",
        default="0.0.0.0:8080",
        metavar="HOST:PORT",
        help="address to listen on; port 0 picks a free one (default 0.0.0.0:8080)",
    )
    p.add_argument(
        "--admin-token-file",
        type=Path,
        default=DEFAULT_TOKEN_FILE,
        help=f"bearer token of the admin API; created if missing (default {DEFAULT_TOKEN_FILE})",
    )
    p.add_argument("--queue", type=integer, help="pairs waiting for the canary (default 256)")
    p.add_argument("--workers", type=integer, help="canary requests in flight (default 2)")
    p.add_argument("--timeout", type=number, help="canary timeout in seconds (default 5)")
    p.add_argument("--max-event-bytes", type=integer, help="largest event body (default 4 MiB)")
    p.add_argument(
        "--pending-bytes",
        type=integer,
        help="body bytes held for requests awaiting their response (default 64 MiB)",
    )
    p.add_argument(
        "--pending-seconds", type=number, help="how long a half awaits its pair (default 30)"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from modelcanary.adapters.repo_catalog import reader_pair, repository_reader
    from modelcanary.asgi_server import AppServer
    from modelcanary.errors import describe_validation_errors
    from modelcanary.shadow.service import ComparatorService, ServiceSettings

    shadow = {
        k: v
        for k, v in (("queue", args.queue), ("workers", args.workers), ("timeout_s", args.timeout))
        if v is not None
    }
    limits = {
        k: v
        for k, v in (
            ("max_event_bytes", args.max_event_bytes),
            ("pending_bytes", args.pending_bytes),
            ("pending_s", args.pending_seconds),
        )
        if v is not None
    }
    try:
        settings = ServiceSettings.model_validate({"shadow": shadow, **limits})
    except ValidationError as exc:
        raise UsageError(f"flags: {describe_validation_errors(exc)}") from None
    reader = repository_reader(args.repository)
    host, port = listen_address(args.listen)
    token = token_file(args.admin_token_file, "--admin-token-file")
    app = ComparatorService(settings, token, lambda m, s, c: reader_pair(reader, m, s, c), say=say)
    server = AppServer(app, host, port, name="comparator")
    say(f"comparator listening on {server.url} (KServe logger url: {server.url}/)")
    say(f"  metrics  {server.url}/metrics")
    say(f"  admin    {server.url}/admin/shadow (bearer token in {args.admin_token_file})")
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    say("comparator stopped")
    return 0
