"""`kubectl canary`: see and steer ModelCanary rollouts from the terminal.

Installed as the executable `kubectl-canary`, so kubectl finds it as a plugin. The verbs
only read ModelCanary resources and record intents in the annotation
`modelcanary.io/intent`; the operator acts on an intent, records who asked and why in the
rollout's history, and removes it. The views are the local mode's (`modelcanary status`).

Exit codes: 0 success; 1 not found, or the action is not allowed in the rollout's phase;
2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import yaml

from modelcanary.alerts.promql import SOURCES
from modelcanary.commands.arguments import Parser, add_intent_verbs, intent_action
from modelcanary.dashboard.serving import (
    DEFAULT_LISTEN,
    listen_address,
    serve,
    session_token,
    window_text,
)
from modelcanary.errors import ModelcanaryError, NotAllowed
from modelcanary.kubectl.cluster import Cluster, list_rows, loaded
from modelcanary.rollout.intents import BY_ACTION, Intent, refusal
from modelcanary.rollout.view import render_history, render_status, status_document
from modelcanary.tables import format_table

WATCH_EVERY_S = 2.0


def pause(seconds: float) -> None:
    """Between two polls of `status -w`."""
    time.sleep(seconds)


def _common(defaults: bool) -> Parser:
    """The flags kubectl users expect, before or after the verb. After it, they have no
    defaults, so they do not undo what was given before it."""
    common = Parser(add_help=False)
    none: Any = None if defaults else argparse.SUPPRESS
    table: Any = "table" if defaults else argparse.SUPPRESS
    common.add_argument("-n", "--namespace", default=none, help="default: the context's")
    common.add_argument("--context", default=none, help="kubeconfig context")
    common.add_argument("--kubeconfig", default=none, help="kubeconfig file")
    common.add_argument(
        "-o", "--output", choices=("table", "json", "yaml"), default=table, help="default: table"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    top, common = _common(defaults=True), _common(defaults=False)
    parser = Parser(
        prog="kubectl canary",
        description="See and steer ModelCanary rollouts. Intents are recorded on the "
        "resource; the operator acts on them.",
        parents=[top],
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser)
    listing = verbs.add_parser("list", help="every ModelCanary", parents=[common])
    listing.add_argument("-A", "--all-namespaces", action="store_true")
    status = verbs.add_parser("status", help="one rollout in detail", parents=[common])
    status.add_argument("name")
    status.add_argument("-w", "--watch", action="store_true", help="redraw as it changes")
    history = verbs.add_parser("history", help="every transition", parents=[common])
    history.add_argument("name")
    add_intent_verbs(verbs, run, lambda p: p.add_argument("name"), parents=[common])
    dashboard = verbs.add_parser(
        "dashboard",
        parents=[common],
        help="a live web page of the rollouts",
        description="Serve a page on 127.0.0.1 that shows the namespace's rollouts (or all, "
        "with -A) as they happen, read through the API server with the kubeconfig's "
        "credentials. Read-only unless --allow-actions; then its buttons record the intents "
        "the other verbs record, with a token printed in the page's URL.",
    )
    dashboard.add_argument("-A", "--all-namespaces", action="store_true")
    dashboard.add_argument(
        "--listen",
        type=listen_address,
        default=listen_address(DEFAULT_LISTEN),
        metavar="127.0.0.1:PORT",
        help=f"address (default {DEFAULT_LISTEN}; port 0: any free)",
    )
    dashboard.add_argument(
        "--allow-actions",
        action="store_true",
        help="let the page promote, pause, resume and roll back",
    )
    dashboard.add_argument(
        "--prometheus",
        metavar="URL",
        help="Prometheus for the traffic charts, e.g. http://127.0.0.1:9090 through "
        "`kubectl port-forward svc/prometheus-operated 9090 -n monitoring`",
    )
    dashboard.add_argument(
        "--source",
        choices=sorted(SOURCES),
        default="triton",
        help="which normalized series to chart (default triton)",
    )
    dashboard.add_argument(
        "--window",
        default="1m",
        type=window_text,
        help="window of the error and latency charts (default 1m)",
    )
    return parser


def formatted(document: Any, output: str) -> str:
    """A document as `-o json` or `-o yaml` prints it."""
    if output == "yaml":
        return yaml.safe_dump(document, sort_keys=False).rstrip("\n")
    return json.dumps(document, indent=2)


def show_status(resource: dict[str, Any], name: str, output: str) -> str:
    spec, state, _, problem, unreadable = loaded(resource)
    now = time.time()
    if spec is None:
        phase = "Unreadable" if unreadable else "Invalid"
        if output == "table":
            return f"rollout {name}: {phase}\n  {problem}"
        return formatted({"name": name, "phase": phase, "message": problem}, output)
    if output == "table":
        return render_status(name, spec, state, now)
    return formatted(status_document(name, spec, state, now), output)


def run(args: argparse.Namespace) -> int:
    cluster = Cluster(args.kubeconfig, args.context, args.namespace)
    if args.verb == "list":
        items = cluster.list(args.all_namespaces)
        if args.output == "table":
            if not items:
                where = "any namespace" if args.all_namespaces else f"namespace {cluster.namespace}"
                print(f"No modelcanaries found in {where}.")
            else:
                print(format_table(list_rows(items, args.all_namespaces, time.time())))
        else:
            print(formatted(items, args.output))
        return 0
    if args.verb == "dashboard":
        from modelcanary.kubectl.dashboard import ClusterBackend

        backend = ClusterBackend(
            cluster, args.all_namespaces, args.prometheus, args.source, args.window
        )
        token = session_token() if args.allow_actions else None
        return serve(backend, args.listen, token, lambda line: print(line, flush=True))
    if args.verb == "status":
        last = None
        while True:
            resource = cluster.get(args.name)
            # redrawn when the rollout changes, not when only its "Ns ago" does
            drawn = (resource.get("spec"), resource.get("status"))
            if drawn != last:
                if args.watch and last is not None and sys.stdout.isatty():
                    print("\x1b[H\x1b[2J", end="")
                print(show_status(resource, args.name, args.output).rstrip("\n"))
                if args.watch:
                    print(f"-- {time.strftime('%H:%M:%S')} (Ctrl-C stops watching)", flush=True)
                last = drawn
            if not args.watch:
                return 0
            pause(WATCH_EVERY_S)
    resource = cluster.get(args.name)
    spec, state, phase, problem, unreadable = loaded(resource)
    if args.verb == "history":
        if args.output == "table":
            print(render_history(state, spec) if spec else f"no history: {problem}")
        else:
            print(formatted([asdict(t) for t in state.history], args.output))
        return 0
    action = intent_action(args)
    if unreadable:
        refused: str | None = f"cannot {BY_ACTION[action].name}: modelcanary {args.name}: {problem}"
    elif phase is None:
        refused = (
            f"cannot {BY_ACTION[action].name}: the spec of modelcanary {args.name} is invalid; "
            "fix it first"
        )
    else:
        refused = refusal(action, phase)
    if refused is not None:
        raise NotAllowed(refused)
    intent = Intent(action, args.reason, cluster.user, uuid.uuid4().hex)
    cluster.annotate(args.name, json.dumps(asdict(intent)))
    why = f": {args.reason}" if args.reason else ""
    print(
        f"modelcanary/{args.name}: {BY_ACTION[action].name} requested by {intent.by}{why}; "
        "the operator acts on it at its next tick"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ModelcanaryError as exc:
        print(f"kubectl canary {args.verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
