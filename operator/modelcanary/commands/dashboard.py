"""`modelcanary dashboard`: a live web page of the local rollouts."""

from __future__ import annotations

import argparse

from modelcanary.commands.arguments import Commands, directory, say
from modelcanary.commands.rollout import RUN_DIR
from modelcanary.dashboard.serving import DEFAULT_LISTEN, listen_address


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "dashboard",
        help="a live web page of the local rollouts",
        description="Serve a page on 127.0.0.1 that shows every rollout of the run "
        "directory as it happens: phase, step, weight, time left, charts of the weight and "
        "of canary versus stable traffic, errors, P99 and shadow agreement, the holdout "
        "gate, each check, the alerts and the history. Read-only unless --allow-actions; "
        "then its buttons record the intents `modelcanary promote` and the others record, "
        "with the stack's token.",
    )
    p.add_argument("--run-dir", type=directory, default=str(RUN_DIR))
    p.add_argument(
        "--listen",
        type=listen_address,
        default=listen_address(DEFAULT_LISTEN),
        metavar="127.0.0.1:PORT",
        help=f"address (default {DEFAULT_LISTEN}; port 0: any free)",
    )
    p.add_argument(
        "--allow-actions",
        action="store_true",
        help="let the page promote, pause, resume and roll back (with the stack's token)",
    )
    p.set_defaults(handler=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    from modelcanary.dashboard.serving import serve
    from modelcanary.local.dashboard import LocalBackend

    backend = LocalBackend(args.run_dir)
    token = backend.token() if args.allow_actions else None
    return serve(backend, args.listen, token, say)
