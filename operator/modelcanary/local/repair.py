"""`modelcanary rollout repair`: a local rollout state that cannot be read made a safe one.

The unreadable file is kept aside whole; the new state is RolledBack at 0% with every
history entry that still reads, and one more saying why. The gateway is sent to stable at
once when the stack runs (else by the next controller: the state is written unapplied).
"""

from __future__ import annotations

import getpass
import json
import time
from dataclasses import replace
from pathlib import Path

from modelcanary.adapters.gateway_router import GatewayRouter
from modelcanary.errors import ModelcanaryError, UsageError, one_line
from modelcanary.local.controller import LocalRollout, read_stack
from modelcanary.rollout.state import (
    RolloutState,
    StateError,
    Transition,
    parse_state,
    parse_transition,
)


def repair(rollout: LocalRollout, now: float) -> list[str]:
    """Repair the rollout's state if it needs it; what was done, in words."""
    spec, store = rollout.spec(), rollout.store
    text = store.read_state_text()
    if text is None:
        return [f"{store.state_path}: no state; nothing to repair"]
    try:
        data = json.loads(text)
    except ValueError as exc:
        data, problem = None, f"not JSON: {one_line(exc)}"
    else:
        try:
            state = parse_state(data, len(spec.steps))
        except StateError as exc:
            problem = str(exc)
        else:
            return [f"{store.state_path}: a valid {state.phase} state; nothing to repair"]
    entries = data.get("history") if isinstance(data, dict) else None
    entries = entries if isinstance(entries, list) else []
    kept = tuple(_readable(entries))
    aside = store.state_path.with_name(
        f"state.json.unreadable-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}"
    )
    try:
        store.state_path.replace(aside)
    except OSError as exc:
        raise UsageError(f"cannot move {store.state_path} aside: {exc.strerror}") from None
    began = kept[0].at if kept else now
    reason = f"state.json was not a valid rollout state ({problem}); repaired"
    safe = RolloutState(
        phase="RolledBack",
        applied=False,
        started_at=began,
        created_at=began,
        history=(
            *kept,
            Transition(now, "rollback", "RolledBack", -1, 0, reason, by=getpass.getuser()),
        ),
    )
    store.save(safe)
    said = [
        f"{store.state_path}: {problem}",
        f"kept it as {aside}; wrote a RolledBack state at 0% with {len(kept)} of "
        f"{len(entries)} history entries",
    ]
    return [*said, _route_to_stable(rollout, safe)]


def _readable(entries: list[object]) -> list[Transition]:
    found = []
    for entry in entries:
        try:
            found.append(parse_transition(entry))
        except StateError:
            continue
    return found


def _route_to_stable(rollout: LocalRollout, safe: RolloutState) -> str:
    """Send all traffic to stable now if the stack runs; say what happened."""
    spec = rollout.spec()
    later = f"the next `modelcanary rollout start` sends all traffic to {spec.stable.version}"
    try:
        urls = read_stack(rollout.directory.parent.parent)
        token = Path(urls["gateway_admin_token_file"]).read_text().strip()
        router = GatewayRouter(
            urls["gateway"], token, spec.model, spec.stable.version, spec.canary.version
        )
        router.route(0, promoted=False)
    except (ModelcanaryError, OSError, KeyError) as exc:
        return f"the gateway was not changed ({one_line(exc)}); {later}"
    rollout.store.save(replace(safe, applied=True))
    return f"the gateway now sends all traffic of {spec.model} to {spec.stable.version}"
