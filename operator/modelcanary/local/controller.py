"""The controller in local mode: the engine against the stack from `modelcanary up`.

Ports: Prometheus of the stack (the gateway's series), the gateway's admin API as the
router and its route pinned to the canary version as the canary's readiness, files under
`<run dir>/rollouts/<model>/` as the state store, the stack's Alertmanager as the
notifier, and the controller webhook's alert book as pushed alerts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modelcanary.adapters.alert_feed import AlertFeed
from modelcanary.adapters.file_store import FileStateStore
from modelcanary.adapters.gateway_router import GatewayRouter
from modelcanary.adapters.gateway_shadow import GatewayShadow
from modelcanary.adapters.golden_check import run_golden_check
from modelcanary.adapters.holdout_gate import run_holdout_gate
from modelcanary.adapters.prometheus import PrometheusSource
from modelcanary.adapters.repo_reader import LocalRepository
from modelcanary.alerts import promql as q
from modelcanary.durations import parse_duration
from modelcanary.errors import ModelcanaryError, UsageError, one_line
from modelcanary.files import write_atomically
from modelcanary.local.monitoring import notifier_for
from modelcanary.rollout.engine import Engine, Rollout, TickResult
from modelcanary.rollout.intents import FINISHED
from modelcanary.rollout.reconcile import describe_split, split_mismatch, wanted_split
from modelcanary.rollout.spec import RolloutSpec, parse_spec
from modelcanary.rollout.state import RolloutState
from modelcanary.rollout.view import progress_line
from modelcanary.waiting import wait_until

SOURCE = "gateway"  # which normalized series the local controller reads


class ControllerError(ModelcanaryError):
    """The controller could not start or go on (exit 3: not 1, which means rolled back)."""

    exit_code = 3


def stack_alert_feed(urls: dict[str, str], wake: threading.Event) -> AlertFeed:
    """The alerts Alertmanager pushed to the stack's controller webhook receiver."""
    receiver = urls["controller_webhook"].rsplit("/alertmanager/", 1)[0]
    token = Path(urls["run_dir"], "controller.token").read_text().strip()
    return AlertFeed(receiver, token, wake)


def read_stack(run_dir: Path) -> dict[str, str]:
    """The URLs `modelcanary up` wrote, or a clear error when it is not running."""
    path = run_dir / "up.json"
    try:
        urls: dict[str, str] = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(
            f"no local stack in {run_dir} ({path} is missing); start one with "
            "`modelcanary up --model MODEL --stable VERSION` or pass --run-dir"
        ) from None
    except ValueError as exc:
        raise UsageError(f"{path}: not readable: {one_line(exc)}") from None
    return urls


def stack_models(urls: dict[str, Any]) -> list[str]:
    """The names of the models the stack serves (up.json's `models`; `model` from an `up`
    of one model before there was a list)."""
    models = urls.get("models")
    if isinstance(models, list):
        return [str(m.get("name")) for m in models if isinstance(m, dict)]
    return [str(urls["model"])] if "model" in urls else []


@dataclass(frozen=True)
class LocalRollout:
    """A rollout's files: spec.json, state.json, intent.json, and finished rollouts."""

    directory: Path

    @classmethod
    def of(cls, run_dir: Path, model: str) -> LocalRollout:
        return cls(run_dir / "rollouts" / model)

    @property
    def store(self) -> FileStateStore:
        return FileStateStore(self.directory)

    def load(self) -> RolloutState | None:
        """The state, validated against the spec's steps; None when there is none."""
        if not self.store.state_path.exists():
            return None
        return FileStateStore(self.directory, len(self.spec().steps)).load()

    def spec(self) -> RolloutSpec:
        path = self.directory / "spec.json"
        try:
            data: Any = json.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"no rollout in {self.directory}") from None
        except ValueError as exc:
            raise UsageError(f"{path}: not readable: {one_line(exc)}") from None
        return parse_spec(data, str(path))

    def begin(self, spec: RolloutSpec) -> str:
        """Resume the same unfinished rollout, or start this one; say which."""
        store = self.store
        state = self.load()
        if state is not None:
            current = self.spec()
            same = current == spec
            if state.phase not in FINISHED:
                if same:
                    return f"resuming at step {state.step + 1} ({state.phase}, {state.weight}%)"
                raise UsageError(
                    f"a rollout of {current.model} {current.stable.version} -> "
                    f"{current.canary.version} is {state.phase}; roll it back or let it finish "
                    "before starting another"
                )
            if same and store.read_intent() is not None:
                return f"acting on the pending intent of the {state.phase} rollout"
            archive = self.directory / "finished"
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(state.started_at or time.time()))
            name = f"{stamp}-{current.stable.version}-to-{current.canary.version}.json"
            with _writing(archive / name):
                archive.mkdir(parents=True, exist_ok=True)
                store.state_path.replace(archive / name)
        with _writing(self.directory / "spec.json"):
            self.directory.mkdir(parents=True, exist_ok=True)
            store.intent_path.unlink(missing_ok=True)
            write_atomically(
                self.directory / "spec.json",
                json.dumps(spec.model_dump(mode="json", by_alias=True), indent=2) + "\n",
            )
        return f"starting: {spec.model} {spec.stable.version} -> {spec.canary.version}"


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An OSError while writing `path` as a one-line error naming it and the reason."""
    try:
        yield
    except OSError as exc:
        raise ControllerError(f"cannot write {path}: {exc.strerror or one_line(exc)}") from None


class LocalController:
    """Runs one rollout's ticks until it finishes or `stop` is set."""

    def __init__(self, run_dir: Path, spec: RolloutSpec, tick_s: float = 1.0) -> None:
        urls = read_stack(run_dir)
        served = stack_models(urls)
        if spec.model not in served:
            raise UsageError(
                f"the spec rolls out {spec.model!r} but the stack in {run_dir} serves "
                f"{', '.join(served) or 'no model'}"
            )
        self.spec, self.tick_s = spec, tick_s
        self.files = LocalRollout.of(run_dir, spec.model)
        self.store = FileStateStore(self.files.directory, len(spec.steps))
        token = Path(urls["gateway_admin_token_file"]).read_text().strip()
        self.gateway, self.token = urls["gateway"], token
        self.router = router = self.router_for(spec)
        repo = LocalRepository(Path(urls["repo"]))
        gateway, versions = urls["gateway"], (spec.stable.version, spec.canary.version)
        holdout = spec.analysis.holdout
        self.rollout = Rollout(
            name=spec.model,
            spec=spec,
            store=self.store,
            router=router,
            golden=lambda: run_golden_check(gateway, repo, spec.model, spec.canary.version),
            readiness=router.canary_ready,
            gate=lambda: run_holdout_gate(
                (gateway, gateway), repo, spec.model, versions, holdout.margin, holdout.confidence
            ),
            shadow=GatewayShadow(
                gateway, token, spec.model, *versions, numeric=spec.shadow.numeric
            ),
        )
        self.wake = threading.Event()
        self.feed = stack_alert_feed(urls, self.wake)
        window = parse_duration(urls.get("prometheus_window", "15s"))
        self.engine = Engine(
            PrometheusSource(urls["prometheus"], SOURCE, window),
            notifier_for(urls, spec.notify.alertmanager),
            pushed=self.feed.firing,
        )

    def router_for(self, spec: RolloutSpec) -> GatewayRouter:
        return GatewayRouter(
            self.gateway, self.token, spec.model, spec.stable.version, spec.canary.version
        )

    def prepare(self) -> list[str]:
        """Before the first tick, what was done, in words: a finished rollout's split that was
        never applied is applied (before it is archived), the rollout begins or resumes,
        and the gateway's split, read back, is set to the one the state stands for."""
        said = []
        before = self.files.load()
        if before is not None and before.phase in FINISHED and not before.applied:
            old = self.files.spec()
            promoted = before.phase == "Promoted"
            self.router_for(old).route(before.weight, promoted)
            self.files.store.save(replace(before, applied=True))
            said.append(
                f"the {before.phase} rollout of {old.model} {old.stable.version} -> "
                f"{old.canary.version} was not applied; applied it first: "
                f"{describe_split(wanted_split(old, before))}"
            )
        said.append(self.files.begin(self.spec))
        state = self.store.load()
        mismatch = split_mismatch(self.spec, state, self.router.split())
        if mismatch is not None:
            promoted = state is not None and state.phase == "Promoted"
            self.router.route(state.weight if state else 0, promoted)
            wanted = describe_split(wanted_split(self.spec, state))
            said.append(f"{mismatch}: set the split to {wanted} first")
        return said

    def run(
        self,
        stop: threading.Event,
        on_tick: Callable[[TickResult], None] = lambda r: None,
        on_problem: Callable[[str], None] = lambda problem: None,
    ) -> RolloutState:
        """Tick every `tick_s` (at once when an alert is pushed) until finished (and its
        state written) or stopped; a tick that cannot run (an unreadable state) is reported
        and tried again. The last state a tick saw (else the one at the start)."""
        last = self.store.load() or RolloutState()
        self.feed.start()
        try:
            while True:
                self.wake.clear()
                try:
                    result = self.engine.tick([self.rollout])[0]
                except ModelcanaryError as exc:
                    on_problem(str(exc))
                else:
                    on_tick(result)
                    last = result.state
                    written = self.store.unsaved is None
                    finished = last.phase in FINISHED and last.applied and written
                    if finished and self.store.read_intent() is None:
                        return last
                if stop.is_set():
                    return last
                self.wake.wait(self.tick_s)
                if stop.is_set():
                    return last
        finally:
            self.feed.stop()


class ProgressPrinter:
    """A live view: each transition, a progress line every few seconds, changed problems."""

    def __init__(
        self,
        spec: RolloutSpec,
        transitions: int,
        say: Callable[[str], None],
        quiet: bool = False,
        every_s: float = 5.0,
    ) -> None:
        self.spec, self.transitions, self.say = spec, transitions, say
        self.quiet, self.every_s = quiet, every_s
        self.printed_at = 0.0
        self.problems: tuple[str, ...] = ()

    def __call__(self, result: TickResult) -> None:
        state, now = result.state, time.time()
        for transition in state.history[self.transitions :]:
            self.say(f"==> {transition.action}: {transition.reason}")
        self.transitions = len(state.history)
        if not self.quiet and now - self.printed_at >= self.every_s:
            self.say(progress_line(self.spec, state, now))
            self.printed_at = now
        self.trouble(*result.problems)

    def trouble(self, *problems: str) -> None:
        """The problems, once each time they change."""
        if problems != self.problems:
            for problem in problems:
                self.say(f"    ! {problem}")
            self.problems = problems


def wait_until_quiet(
    urls: dict[str, str],
    model: str,
    version: str,
    stop: threading.Event,
    say: Callable[[str], None] = lambda line: None,
    timeout_s: float = 120,
) -> bool:
    """Wait until no alert for the version is pending or firing, in Prometheus or pushed,
    and its analysis window holds none of its requests.

    An earlier rollout's alerts for a version would roll the next rollout of it back at
    once (a firing `rollbackOn` alert acts in any phase), so a new attempt waits them out;
    and while the window still holds the earlier attempt's requests, a rule may yet fire
    on them after the new attempt began.
    """
    source = PrometheusSource(urls["prometheus"], SOURCE, 0)
    feed = stack_alert_feed(urls, threading.Event())
    told = False

    def quiet() -> bool:
        nonlocal told
        labels = f'model="{model}", version="{version}"'
        alerts = source.query(f"ALERTS{{{labels}}}")
        alerts += source.query(f"{q.REQUESTS}{{{labels}}} > 0")
        if not feed.refresh(0.0):
            raise ModelcanaryError(str(feed.problem))
        pushed = [a for a in feed.firing(model) if a.version == version]
        if not alerts and not pushed:
            return True
        if not told:
            say(f"waiting for the alerts of {model} version {version} to resolve ...")
            told = True
        return False

    return wait_until(quiet, timeout_s, every=1.0, stop=stop)
