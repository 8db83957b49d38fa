"""`modelcanary up`: Triton, the gateway, Prometheus, Alertmanager and receivers, locally."""

from __future__ import annotations

import argparse
from pathlib import Path

from modelcanary.commands.arguments import (
    Commands,
    directory,
    int_list,
    integer,
    say,
    stop_requested,
)
from modelcanary.errors import UsageError

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
        metavar=MODEL_FORM,
        help="a model to serve, with its stable version (and a canary at an initial weight); "
        "repeat for several models. One model may also be given as --model NAME --stable N",
    )
    p.add_argument(
        "--models",
        dest="models_file",
        type=Path,
        metavar="FILE",
        help="the models to serve, from a YAML file: `models:`, a list of `name`, `stable` "
        "and optionally `canary` and `canaryWeight` (instead of --model)",
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
    from modelcanary.commands.up_models import given_models
    from modelcanary.local.stack import LocalStack, StackOptions, describe

    if not args.repo.is_dir():
        raise UsageError(f"--repo {args.repo}: no such directory")
    models = given_models(args)
    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a port number (1 to 65535)")
    if not 1 <= args.replicas <= MAX_REPLICAS:
        raise UsageError(f"--replicas {args.replicas}: must be between 1 and {MAX_REPLICAS}")
    stop = stop_requested()
    first = models[0]
    options = StackOptions(
        repo=args.repo,
        model=first.name,
        stable=first.stable,
        canary=first.canary,
        run_dir=args.run_dir,
        profile=args.profile,
        canary_weight=first.canary_weight,
        profile_overrides=tuple(args.overrides),
        versions=tuple(args.versions),
        port=args.port,
        replicas=args.replicas,
        other_models=tuple(models[1:]),
    )
    stack = LocalStack(options, say=say)
    try:
        urls = stack.start()
        say("modelcanary is up:")
        for line in describe(urls):
            say(line)
        for model in stack.models:
            say(f"  {model.describe()}")
        for replica in stack.replicas if len(stack.replicas) > 1 else []:
            say(f"  {replica['part']:<25} {replica['http']} (metrics {replica['metrics']})")
        say(
            "A part that dies is restarted (see parts.json and supervisor.log in the run "
            "directory); Ctrl-C stops everything."
        )
        while not stop.wait(0.5):
            pass
    finally:
        stack.stop()
    say("stopped")
    return 0
