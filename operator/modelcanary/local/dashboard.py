"""The live dashboard's backend in local mode: the rollouts under `<run dir>/rollouts/`,
their traffic from the stack's Prometheus, intents as `intent.json` (as `modelcanary
promote` and the others write them), and the stack's gateway admin token as the token."""

from __future__ import annotations

import getpass
from pathlib import Path

from modelcanary.dashboard.app import prometheus_traffic
from modelcanary.dashboard.queries import Panel, Points, traffic_panels
from modelcanary.dashboard.view import Found
from modelcanary.errors import ModelcanaryError, UsageError
from modelcanary.local.controller import SOURCE, LocalRollout, read_stack
from modelcanary.rollout.intents import BY_ACTION, Intent, IntentAction
from modelcanary.rollout.state import RolloutState

# 5 scrapes of the stack's profile (demo: 1 s; production: 15 s)
WINDOWS = {"demo": "5s", "production": "75s"}


class LocalBackend:
    """The rollouts of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def describe(self) -> str:
        return f"run directory {self.run_dir}"

    def token(self) -> str:
        """The stack's token (the gateway admin token `modelcanary up` wrote)."""
        path = self.run_dir / "gateway.token"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            raise UsageError(
                f"--allow-actions needs the stack's token, and {path} is missing; start the "
                "stack with `modelcanary up` or pass its --run-dir"
            ) from None

    def rollouts(self) -> list[Found]:
        root = self.run_dir / "rollouts"
        found = []
        for directory in sorted(p for p in root.glob("*") if (p / "spec.json").is_file()):
            rollout = LocalRollout(directory)
            name = directory.name
            try:
                spec, state = rollout.spec(), rollout.store.load() or RolloutState()
            except ModelcanaryError as exc:
                found.append(Found(name, name, "", None, RolloutState(), str(exc)))
                continue
            found.append(Found(name, name, "", spec, state))
        return found

    def panels(self, found: Found) -> list[Panel]:
        assert found.spec is not None
        try:
            profile = read_stack(self.run_dir).get("profile", "demo")
        except UsageError:
            profile = "demo"
        versions = (found.spec.stable.version, found.spec.canary.version)
        return traffic_panels(found.spec.model, SOURCE, WINDOWS.get(profile, "75s"), versions)

    def traffic(
        self, panels: list[Panel], start: float, end: float, step: float
    ) -> dict[str, dict[str, Points]]:
        prometheus = read_stack(self.run_dir)["prometheus"]
        return prometheus_traffic(prometheus, SOURCE, panels, start, end, step)

    def record(self, found: Found, action: IntentAction, reason: str) -> str:
        store = LocalRollout(self.run_dir / "rollouts" / found.name).store
        intent = store.record_intent(Intent(action, reason, f"{getpass.getuser()} (dashboard)"))
        return (
            f"{found.name}: {BY_ACTION[action].name} recorded (intent {intent.id[:8]}); "
            "the controller acts on it at its next tick"
        )
