"""Local rollouts: `rollout start -f` and `rollout repair`, and `status`, `history`,
`promote`, `rollback`, `pause`, `resume`, `retry` from another terminal."""

from __future__ import annotations

import argparse
import getpass
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from modelcanary.commands.arguments import (
    Commands,
    Parser,
    add_intent_verbs,
    directory,
    intent_action,
    number,
    say,
    stop_requested,
)
from modelcanary.errors import ModelcanaryError, NotAllowed, UsageError
from modelcanary.files import read_text

if TYPE_CHECKING:
    from modelcanary.local.controller import LocalRollout
    from modelcanary.rollout.spec import RolloutSpec
    from modelcanary.rollout.state import RolloutState

RUN_DIR = Path(".modelcanary/up")


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "rollout",
        help="run a canary rollout against the local stack",
        description="Rollouts against the stack from `modelcanary up`.",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser)
    start = verbs.add_parser(
        "start",
        help="run the controller on a rollout spec until the rollout finishes",
        description="Run the controller: golden-sample check, then step by step while the "
        "checks pass and no alert fires; roll back at once when one does. Started again "
        "with the same spec, it resumes from the persisted state. Before the first tick it "
        "reads the gateway's split back and sets it to the one the state stands for. Exit 0 "
        "when promoted, 1 when rolled back, 2 on bad input (the spec, the state, no stack), "
        "3 when the controller could not start (the gateway, a file it cannot write), 130 "
        "when stopped (the rollout stays where it is).",
    )
    start.add_argument("-f", "--file", type=Path, required=True, help="rollout spec (YAML)")
    start.add_argument("--run-dir", type=directory, default=str(RUN_DIR))
    start.add_argument("--tick", type=number, default=1.0, help="seconds between ticks (1)")
    start.add_argument("--quiet", action="store_true", help="print transitions only")
    start.set_defaults(handler=_start)
    repair = verbs.add_parser(
        "repair",
        help="make an unreadable rollout state a rolled-back one, keeping its history",
        description="When state.json is not a valid rollout state: keep it aside as "
        "state.json.unreadable-TIME, and write a RolledBack state at 0% that keeps every "
        "history entry that reads, and send all traffic to stable (now if the stack runs, "
        "else at the next `rollout start`). A valid state is left as it is.",
    )
    _target(repair)
    repair.set_defaults(handler=_repair)

    status = commands.add_parser("status", help="show a local rollout")
    _target(status)
    status.add_argument("-o", "--output", choices=("table", "json"), default="table")
    status.set_defaults(handler=_status)
    history = commands.add_parser("history", help="every transition of a local rollout")
    _target(history)
    history.add_argument("-o", "--output", choices=("table", "json"), default="table")
    history.set_defaults(handler=_history)

    add_intent_verbs(commands, _intent, _target)


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="rollout (model) name; default: the only one")
    parser.add_argument("--run-dir", type=directory, default=str(RUN_DIR))


def _start(args: argparse.Namespace) -> int:
    from modelcanary.local.controller import ControllerError, LocalController, ProgressPrinter
    from modelcanary.rollout.spec import load_spec

    if not args.file.is_file():
        raise UsageError(f"-f {args.file}: no such file")
    if args.tick <= 0:
        raise UsageError("--tick must be positive")
    spec = load_spec(read_text(args.file, f"-f {args.file}"), str(args.file))
    try:
        controller = LocalController(args.run_dir, spec, args.tick)
        for line in controller.prepare():
            say(line)
        before = controller.store.load()
    except ModelcanaryError as exc:
        if exc.exit_code == 1:  # 1 means rolled back
            raise ControllerError(str(exc)) from None
        raise
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        raise ControllerError(f"{exc.strerror or exc}{where}") from None
    stop = stop_requested()
    show = ProgressPrinter(spec, len(before.history) if before else 0, say, args.quiet)
    state = controller.run(stop, show, show.trouble)
    if stop.is_set():
        say(
            f"controller stopped; the rollout stays {state.phase} at {state.weight}%; "
            f"`modelcanary rollout start -f {args.file}` resumes it"
        )
        return 130
    say(f"rollout {state.phase}: {state.history[-1].reason if state.history else ''}")
    return 0 if state.phase == "Promoted" else 1


def _repair(args: argparse.Namespace) -> int:
    from modelcanary.local.repair import repair

    rollout = _resolve(args)
    for line in repair(rollout, time.time()):
        say(line)
    return 0


def _resolve(args: argparse.Namespace) -> LocalRollout:
    from modelcanary.local.controller import LocalRollout

    root = args.run_dir / "rollouts"
    if args.name:
        found = LocalRollout.of(args.run_dir, args.name)
        if not (found.directory / "spec.json").is_file():
            raise NotAllowed(f"no rollout {args.name!r} in {root}")
        return found
    names = sorted(p.name for p in root.glob("*") if (p / "spec.json").is_file())
    if not names:
        raise NotAllowed(f"no rollouts in {root}; start one with `modelcanary rollout start -f`")
    if len(names) > 1:
        raise UsageError(f"several rollouts in {root} ({', '.join(names)}); name one")
    return LocalRollout.of(args.run_dir, names[0])


def _loaded(args: argparse.Namespace) -> tuple[LocalRollout, RolloutSpec, RolloutState]:
    from modelcanary.rollout.state import RolloutState

    rollout = _resolve(args)
    return rollout, rollout.spec(), rollout.load() or RolloutState()


def _status(args: argparse.Namespace) -> int:
    from modelcanary.rollout.view import render_status, status_document

    rollout, spec, state = _loaded(args)
    name, now = rollout.directory.name, time.time()
    if args.output == "json":
        say(json.dumps(status_document(name, spec, state, now), indent=2))
    else:
        say(render_status(name, spec, state, now))
    return 0


def _history(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from modelcanary.rollout.view import render_history

    _, spec, state = _loaded(args)
    if args.output == "json":
        say(json.dumps([asdict(t) for t in state.history], indent=2))
    else:
        say(render_history(state, spec))
    return 0


def _intent(args: argparse.Namespace) -> int:
    from modelcanary.rollout.intents import BY_ACTION, Intent, refusal

    rollout, _, state = _loaded(args)
    action = intent_action(args)
    refused = refusal(action, state.phase)
    if refused is not None:
        raise NotAllowed(refused)
    intent = rollout.store.record_intent(Intent(action, args.reason, getpass.getuser()))
    say(
        f"{rollout.directory.name}: {BY_ACTION[action].name} recorded "
        f"(intent {intent.id[:8]}); the controller acts on it at its next tick"
    )
    return 0
