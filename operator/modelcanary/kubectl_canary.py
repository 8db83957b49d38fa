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
import getpass
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, NoReturn, cast

import yaml

from modelcanary.errors import ModelcanaryError, NotAllowed, UsageError
from modelcanary.kube.api import NotFoundError, model_canary
from modelcanary.kube.crd import GROUP, PLURAL, VERSION
from modelcanary.kube.status_store import INTENT_ANNOTATION
from modelcanary.rollout.spec import RolloutSpec, parse_spec
from modelcanary.rollout.stepper import Intent, IntentAction, Phase, RolloutState
from modelcanary.rollout.view import (
    VERBS,
    refusal,
    render_history,
    render_status,
    status_document,
)
from modelcanary.tables import format_table

WATCH_EVERY_S = 2.0


def pause(seconds: float) -> None:
    """Between two polls of `status -w`."""
    time.sleep(seconds)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"kubectl canary: error: {message} (see kubectl canary --help)\n")


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
    promote = verbs.add_parser("promote", help="next step now, or --full", parents=[common])
    promote.add_argument("name")
    promote.add_argument("--full", action="store_true", help="straight to 100% and promote")
    promote.add_argument("--reason", default="")
    rollback = verbs.add_parser("rollback", help="all traffic back to stable", parents=[common])
    rollback.add_argument("name")
    rollback.add_argument("--reason", required=True)
    for verb, text in (
        ("pause", "hold the canary at its step"),
        ("resume", "continue a paused rollout"),
        ("retry", "start a rolled-back rollout again from the first step"),
    ):
        sub = verbs.add_parser(verb, help=text, parents=[common])
        sub.add_argument("name")
        sub.add_argument("--reason", default="")
    return parser


class Cluster:
    """ModelCanary resources through the kubeconfig's current (or given) context."""

    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None):
        from kubernetes import client, config

        try:
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            chosen = (
                next((c for c in contexts if c["name"] == context), None) if context else active
            )
            if context and chosen is None:
                raise UsageError(f"--context {context}: no such context in the kubeconfig")
            api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context
            )
        except config.ConfigException as exc:
            raise UsageError(f"kubeconfig: {exc}") from None
        self.namespace = namespace or (chosen or {}).get("context", {}).get("namespace", "default")
        self.user = (chosen or {}).get("context", {}).get("user") or getpass.getuser()
        self.api = client.CustomObjectsApi(api_client)

    def get(self, name: str) -> dict[str, Any]:
        try:
            return model_canary(self.api, self.namespace, name).get()
        except NotFoundError:
            raise NotAllowed(
                f"modelcanary {name!r} not found in namespace {self.namespace!r}"
            ) from None

    def list(self, all_namespaces: bool) -> list[dict[str, Any]]:
        try:
            if all_namespaces:
                found = self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            else:
                found = self.api.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL
                )
        except Exception as exc:
            raise ModelcanaryError(f"listing modelcanaries: {exc}") from None
        return cast(list[dict[str, Any]], cast(dict[str, Any], found).get("items", []))

    def annotate(self, name: str, value: str) -> None:
        body = {"metadata": {"annotations": {INTENT_ANNOTATION: value}}}
        model_canary(self.api, self.namespace, name).patch(body)


def loaded(resource: dict[str, Any]) -> tuple[RolloutSpec | None, RolloutState, Phase | None]:
    """The spec (None when invalid), the state and the phase of a resource."""
    name = resource.get("metadata", {}).get("name", "?")
    status = resource.get("status", {})
    try:
        spec: RolloutSpec | None = parse_spec(resource.get("spec"), f"modelcanary {name}")
    except UsageError:
        spec = None
    raw = status.get("state")
    state = RolloutState.from_json(raw) if raw else RolloutState()
    if spec is None or status.get("phase") == "Invalid":
        return None, state, None
    return spec, state, state.phase


def list_rows(items: Sequence[dict[str, Any]], all_namespaces: bool, now: float) -> list[list[str]]:
    header = ["NAME", "PHASE", "MODEL", "STABLE", "CANARY", "WEIGHT", "STEP", "AGE"]
    rows = [(["NAMESPACE"] if all_namespaces else []) + header]
    for item in sorted(
        items, key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"])
    ):
        meta, spec, status = item["metadata"], item.get("spec", {}), item.get("status", {})
        steps = spec.get("steps") or []
        step = f"{status.get('step', 0)}/{len(steps)}" if steps else str(status.get("step", 0))
        stable = str(spec.get("stable", {}).get("version", ""))
        canary = str(spec.get("canary", {}).get("version", ""))
        row = [
            meta["name"], status.get("phase", "Pending"), str(spec.get("model", "")), stable,
            canary, f"{status.get('weight', 0)}%", step,
            _age(meta.get("creationTimestamp"), now),
        ]  # fmt: skip
        rows.append(([meta.get("namespace", "")] if all_namespaces else []) + row)
    return rows


def _age(created: str | None, now: float) -> str:
    if not created:
        return "-"
    seconds = now - datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def formatted(document: Any, output: str) -> str:
    """A document as `-o json` or `-o yaml` prints it."""
    if output == "yaml":
        return yaml.safe_dump(document, sort_keys=False).rstrip("\n")
    return json.dumps(document, indent=2)


def show_status(cluster: Cluster, name: str, output: str) -> str:
    resource = cluster.get(name)
    spec, state, _ = loaded(resource)
    now = time.time()
    if spec is None:
        message = resource.get("status", {}).get("message", "the spec is not valid")
        if output == "table":
            return f"rollout {name}: Invalid\n  {message}"
        return formatted({"name": name, "phase": "Invalid", "message": message}, output)
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
    if args.verb == "status":
        last = None
        while True:
            text = show_status(cluster, args.name, args.output)
            if text != last:
                if args.watch and last is not None and sys.stdout.isatty():
                    print("\x1b[H\x1b[2J", end="")
                print(text.rstrip("\n"))
                if args.watch:
                    print(f"-- {time.strftime('%H:%M:%S')} (Ctrl-C stops watching)", flush=True)
                last = text
            if not args.watch:
                return 0
            pause(WATCH_EVERY_S)
    resource = cluster.get(args.name)
    spec, state, phase = loaded(resource)
    if args.verb == "history":
        if args.output == "table":
            print(render_history(state, spec) if spec else "no history: the spec is not valid")
        else:
            print(formatted([asdict(t) for t in state.history], args.output))
        return 0
    action: IntentAction = "promote_full" if args.verb == "promote" and args.full else args.verb
    if phase is None:
        refused: str | None = (
            f"cannot {VERBS[action]}: the spec of modelcanary {args.name} is invalid; fix it first"
        )
    else:
        refused = refusal(action, phase)
    if refused is not None:
        raise NotAllowed(refused)
    intent = Intent(action, args.reason, cluster.user, uuid.uuid4().hex)
    cluster.annotate(args.name, json.dumps(asdict(intent)))
    why = f": {args.reason}" if args.reason else ""
    print(
        f"modelcanary/{args.name}: {VERBS[action]} requested by {intent.by}{why}; "
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
