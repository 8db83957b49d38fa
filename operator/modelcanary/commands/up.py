"""`modelcanary up`: Triton, the gateway, Prometheus, Alertmanager and receivers, locally."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modelcanary.commands.arguments import (
    Commands,
    directory,
    int_list,
    integer,
    say,
    stop_requested,
)
from modelcanary.errors import UsageError

if TYPE_CHECKING:
    from modelcanary.local.stack_models import ServedModel

MAX_REPLICAS = 16
MODEL_FORM = "NAME:STABLE[:CANARY[:WEIGHT]]"


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "up",
        help="run the local serving and alerting loop (Triton, gateway, Prometheus, Alertmanager)",
        description="Start, in a run directory, Triton with every version of each model, "
        "the gateway, the controller's webhook receiver, a local on-call receiver, "
        "Alertmanager and Prometheus; wait until all are ready, print their URLs, restart "
        "any that dies (with backoff, on the same port), and stop them all on Ctrl-C or "
        "SIGTERM. The ports are kept in the run directory: the next `up` there (also after "
        "this one was killed) serves on the same URLs.",
    )
    p.add_argument("--repo", type=Path, default=Path("model_repo"))
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        required=True,
        metavar=MODEL_FORM,
        help="a model to serve, with its stable version (and a canary at an initial weight); "
        "repeat for several models. One model may also be given as --model NAME --stable N",
    )
    p.add_argument("--stable", type=integer, help="stable version (with a single --model NAME)")
    p.add_argument("--canary", type=integer, help="a canary version with an initial weight")
    p.add_argument(
        "--canary-weight",
        type=integer,
        default=0,
        help="initial canary percent (an unfinished rollout in the run directory sets the split "
        "it recorded instead)",
    )
    p.add_argument(
        "--versions",
        type=int_list,
        default=(),
        help="versions to serve of each model, comma-separated (default: every version in "
        "the repository)",
    )
    p.add_argument("--profile", default="demo", help="alert profile: demo or production")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a threshold or window of the profile",
    )
    p.add_argument("--run-dir", type=directory, default=".modelcanary/up")
    p.add_argument(
        "--port",
        type=integer,
        help="the gateway's port (default: the one kept in RUN_DIR/ports.json, where every "
        "part's port is kept so that the next `up` serves on the same URLs)",
    )
    p.add_argument(
        "--replicas",
        type=integer,
        default=1,
        help=f"Triton processes, each serving every version (1 to {MAX_REPLICAS}; default 1); "
        "the gateway balances each version over them and the supervisor restarts each",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from modelcanary.local.stack import LocalStack, StackOptions, describe
    from modelcanary.local.stack_models import describe_model

    if not args.repo.is_dir():
        raise UsageError(f"--repo {args.repo}: no such directory")
    models = served_models(args.models, args.stable, args.canary, args.canary_weight)
    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a port number (1 to 65535)")
    if not 1 <= args.replicas <= MAX_REPLICAS:
        raise UsageError(f"--replicas {args.replicas}: must be between 1 and {MAX_REPLICAS}")
    stop = stop_requested()
    first = models[0]
    options = StackOptions(
        repo=args.repo, model=first.name, stable=first.stable, canary=first.canary,
        run_dir=args.run_dir, profile=args.profile, canary_weight=first.canary_weight,
        profile_overrides=tuple(args.overrides), versions=tuple(args.versions), port=args.port,
        replicas=args.replicas, other_models=tuple(models[1:]),
    )  # fmt: skip
    stack = LocalStack(options, say=say)
    try:
        urls = stack.start()
        say("modelcanary is up:")
        for line in describe(urls):
            say(line)
        for model in stack.models:
            say(f"  {describe_model(model)}")
        for replica in stack.replicas if len(stack.replicas) > 1 else []:
            say(f"  {replica['part']:<25} {replica['http']} (metrics {replica['metrics']})")
        say("A part that dies is restarted (see parts.json and supervisor.log in the run "
            "directory); Ctrl-C stops everything.")  # fmt: skip
        while not stop.wait(0.5):
            pass
    finally:
        stack.stop()
    say("stopped")
    return 0


def served_models(
    models: Sequence[str], stable: int | None, canary: int | None, canary_weight: int
) -> tuple[ServedModel, ...]:
    """The models `--model` names (`NAME:STABLE[:CANARY[:WEIGHT]]`, or a single NAME with
    --stable, --canary and --canary-weight), checked: each once, each with a stable version."""
    from modelcanary.local.stack_models import ServedModel

    options = stable is not None or canary is not None or bool(canary_weight)
    if len(models) > 1 and options:
        raise UsageError(
            "--stable, --canary and --canary-weight go with a single --model; with several, "
            f"give each its own: --model {MODEL_FORM}"
        )
    if len(models) == 1 and ":" not in models[0]:
        if stable is None:
            raise UsageError(
                f"--model {models[0]}: no stable version; give --stable, or --model "
                f"{models[0]}:STABLE"
            )
        if not 0 <= canary_weight <= 100:
            raise UsageError("--canary-weight must be between 0 and 100")
        if canary_weight and canary is None:
            raise UsageError("--canary-weight needs --canary")
        if canary == stable:
            raise UsageError("--canary must differ from --stable")
        return (ServedModel(_parse_model(models[0]).name, stable, canary, canary_weight),)
    found: list[ServedModel] = []
    for text in models:
        if stable is not None:
            raise UsageError(f"--model {text} gives the stable version already; drop --stable")
        if options:
            raise UsageError(f"--model {text}: give its canary as --model {MODEL_FORM}")
        model = _parse_model(text)
        if model.stable < 1:
            raise UsageError(f"--model {text}: no stable version; give --model {text}:STABLE")
        if model.name in (m.name for m in found):
            raise UsageError(f"--model {model.name} is given twice")
        found.append(model)
    return tuple(found)


def _parse_model(text: str) -> ServedModel:
    """One `--model NAME[:STABLE[:CANARY[:WEIGHT]]]` (stable 0 when it names none)."""
    from modelcanary.local.stack_models import ServedModel
    from modelcanary.modelrepo.repository import check_model_name

    name, *fields = text.split(":")
    if len(fields) > 3:
        raise UsageError(f"--model {text}: expected {MODEL_FORM}")
    try:
        check_model_name(name)
    except UsageError as exc:
        raise UsageError(str(exc).replace("--name", "--model", 1)) from None
    numbers: list[int | None] = []
    for field, what in zip(fields, ("stable version", "canary", "canary weight"), strict=False):
        if field == "" and what != "stable version":
            numbers.append(None)
        elif what == "canary weight" and field.isdigit():
            numbers.append(int(field))
        elif not field.isdigit() or int(field) < 1:
            kind = "whole number" if what == "canary weight" else "version (1 or more)"
            raise UsageError(f"--model {text}: the {what} {field!r} is not a {kind}")
        else:
            numbers.append(int(field))
    stable, canary, weight = [*numbers, None, None, None][:3]
    if weight is not None and not 0 <= weight <= 100:
        raise UsageError(f"--model {text}: the canary weight must be between 0 and 100")
    if weight and canary is None:
        raise UsageError(f"--model {text}: a canary weight needs a canary")
    if canary is not None and canary == stable:
        raise UsageError(f"--model {text}: the canary must differ from stable")
    return ServedModel(name, stable or 0, canary, weight or 0)
