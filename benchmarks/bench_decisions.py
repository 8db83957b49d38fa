"""Decision quality: which controller promotes healthy canaries and rolls back bad ones, how
fast, and how many failed requests the canary served meanwhile (issue 14 item 4).

    python benchmarks/bench_decisions.py [--seeds 30] [--scenarios a,b] [--profile production]

Simulated time, no stack: `decision_sim` serves synthetic per-second traffic (50 requests/s
unless a scenario says otherwise; stable errs 0.1% with a median of 20 ms and a P99 of
80 ms) and emulates Prometheus (15 s scrapes, rules evaluated every 15 s, 5 s after the
scrapes; the profile's recording and alert rules with their `for:`). Every run starts with
an hour of stable-only history, so the baseline windows are full. Each scenario runs with
the same seeds for every controller; a run ends at the controller's first promotion,
rollback or pause, or at the horizon (progressDeadline + 5m) as "running".

Controllers:

- modelcanary: the real `Engine` (judge and stepper) ticking every 10 s (the operator's
  default), with the rollout spec's defaults (steps 5, 10, 25, 50, 100; interval 30s;
  failureLimit 2; noData pause after 5m; progressDeadline 30m) and the profile's
  thresholds; the emulated Prometheus is its metrics source, with windowed stats, the
  cumulative counters (`Counts`) and `ALERTS`; a fake router moves the traffic at once.
- flagger: Flagger's documented analysis (docs: "Canary analysis", "Metrics analysis") with
  its example settings, but `interval: 30s` like ours: stepWeight 10, maxWeight 50,
  threshold 5, request-success-rate >= 99% and request-duration P99 <= 500 ms, both over
  `1m`. Every interval: roll back if the failed checks have reached the threshold (checked
  first, as Flagger does, so one interval after the last failure); the first iteration
  routes stepWeight without a check; a failing metric, a metric without values
  (no series, or NaN when the canary got no request in the minute: "Halt advancement no
  values found ... probably not receiving traffic") or a failed query adds a failed check
  (never reset); otherwise advance by stepWeight, and promote once a check passes at
  maxWeight.
- argo, argo-fl3: Argo Rollouts' canary steps setWeight 5, 10, 25, 50, each followed by
  `pause: {duration: 1m}`, then 100% (complete), with a background AnalysisRun of the
  documented `success-rate` template: every 30s, non-5xx over all canary requests over
  `[5m]` (the docs' window; `rate`, where the example uses `irate`), successCondition
  `result[0] >= 0.99`. failureLimit 0 (Argo's default) or 3: the run fails, and the rollout
  aborts, when failed measurements exceed it. NaN (no canary request in the window) fails
  the condition; an empty result (no series yet) or an unreachable Prometheus is an Error,
  and more than consecutiveErrorLimit (4, the default) in a row aborts. No latency metric:
  the documented template has none.

Faults: silent-crash takes the canary's target away at 90 s (its requests fail and no
series records them; Prometheus keeps its older samples in range windows until they age
out, as after a staleness marker); prom-gap-2m stops Prometheus from 60 s to 180 s (no
scrape, no evaluation, every query fails: the engine sees "Prometheus unreachable");
burst-20s makes the canary fail every request from 60 s to 80 s.

Replicas (issue 20): each replica of a version is its own series, as Prometheus scrapes
pods; the recording rules' rates are per-series increases (with counter resets) summed.
scale-1-3-1 scales both versions from 1 to 3 replicas at 60 s and back to 1 at 180 s
(the new ones count from zero; the gone ones are no longer scraped); replica-restart runs
2 replicas of each and restarts replica 0 of both at 120 s (its counters from zero); each
healthy and with 5% canary errors. scrape-60s-offset-30s scrapes every 60 s, the canary's
targets 30 s after stable's, at 40 requests/s with failureLimit 0.

Right outcome: healthy (and low traffic, gap) -> promoted; a regression beyond the
production tolerances -> rolled back; "either" (promoted or rolled back, not paused or
running) for the 20 s burst and for regressions at or within the tolerances: 1% errors
(error ratio max 1%, margin 0.5 points, Flagger's and Argo's 99%), P99 +20% and +50%
(ratio limit 1.5). "failed" counts the canary's failed requests until the decision,
including those a crashed canary dropped; a paused canary keeps its weight after that.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from decision_sim import (
    CANARY,
    STABLE,
    Behaviour,
    Prometheus,
    PrometheusDown,
    World,
    latency_probs,
)
from modelcanary.alerts.profile import PROFILES, Profile, load_profile
from modelcanary.durations import parse_duration
from modelcanary.rollout.engine import Engine, Rollout
from modelcanary.rollout.intents import Intent
from modelcanary.rollout.ports import GoldenResult, RolloutEvent, RolloutKey
from modelcanary.rollout.spec import RolloutSpec, parse_spec
from modelcanary.rollout.state import RolloutState
from modelcanary.tables import format_table

RESULTS = Path(__file__).parent / "results" / "decisions.json"
EPOCH = 1_700_000_000.0
HISTORY_S = 3600  # stable-only traffic before the rollout: the 1h baseline window is full
TICK_S = 10
MEDIAN_S, P99_S = 0.020, 0.080
BASE_ERROR = 0.001

Outcome = Literal["promoted", "rolled_back", "paused", "running"]
Expected = Literal["promote", "rollback", "either"]
RIGHT: dict[Expected, tuple[Outcome, ...]] = {
    "promote": ("promoted",),
    "rollback": ("rolled_back",),
    "either": ("promoted", "rolled_back"),
}


@dataclass(frozen=True)
class Scenario:
    """Traffic and faults; times in seconds since the rollout began (multiples of 5)."""

    name: str
    expected: Expected
    rate: float = 50.0
    stable_error: float = BASE_ERROR
    canary_error: float = BASE_ERROR
    canary_slower: float = 1.0  # the whole latency distribution times this
    slow_share: float = 0.0  # this share of canary requests ...
    slow_factor: float = 1.0  # ... this many times slower
    crash_at: int | None = None  # the canary's target is gone: its requests fail, unrecorded
    gap: tuple[int, int] | None = None  # Prometheus down
    burst: tuple[int, int] | None = None  # the canary fails every request
    replicas: int = 1  # of each version at the start
    scale: tuple[tuple[int, int], ...] = ()  # (at, replicas): both versions scale
    restart_at: int | None = None  # replica 0 of both versions restarts (counters from 0)
    scrape_s: int | None = None  # this scenario's scrape interval (default: the setting's)
    canary_offset: int = 0  # the canary's targets are scraped this much after stable's
    spec: dict[str, Any] = field(default_factory=dict)  # rollout spec overrides


SCALING = ((60, 3), (180, 1))  # both versions: 1 -> 3 replicas at 60 s, back to 1 at 180 s

SCENARIOS = [
    Scenario("healthy", "promote"),
    Scenario("noisy-stable", "promote", stable_error=0.005, canary_error=0.005),
    Scenario("errors-1%", "either", stable_error=0.005, canary_error=0.01),
    Scenario("errors-2%", "rollback", stable_error=0.005, canary_error=0.02),
    Scenario("errors-5%", "rollback", stable_error=0.005, canary_error=0.05),
    Scenario("errors-30%", "rollback", stable_error=0.005, canary_error=0.30),
    Scenario("p99+20%", "either", canary_slower=1.2),
    Scenario("p99+50%", "either", canary_slower=1.5),
    Scenario("p99x3", "rollback", canary_slower=3.0),
    Scenario("slow-tail", "rollback", slow_share=0.05, slow_factor=10.0),
    Scenario("rate-0.2", "promote", rate=0.2),
    Scenario("rate-1", "promote", rate=1.0),
    Scenario("rate-5", "promote", rate=5.0),
    Scenario("silent-crash", "rollback", crash_at=90),
    Scenario("prom-gap-2m", "promote", gap=(60, 180)),
    Scenario("burst-20s", "either", burst=(60, 80)),
    Scenario("rate-40", "promote", rate=40.0),
    Scenario("scale-1-3-1", "promote", scale=SCALING),
    Scenario(
        "scale-1-3-1-errors-5%", "rollback", stable_error=0.005, canary_error=0.05, scale=SCALING
    ),
    Scenario("replica-restart", "promote", replicas=2, restart_at=120),
    Scenario(
        "replica-restart-errors-5%",
        "rollback",
        stable_error=0.005,
        canary_error=0.05,
        replicas=2,
        restart_at=120,
    ),
    Scenario(
        "scrape-60s-offset-30s",
        "promote",
        rate=40.0,
        scrape_s=60,
        canary_offset=30,
        spec={"analysis": {"failureLimit": 0}},
    ),
]


@dataclass(frozen=True)
class Settings:
    profile: str = "production"
    scrape_s: int = 15
    controllers: tuple[str, ...] = ("modelcanary", "flagger", "argo", "argo-fl3")


@dataclass(frozen=True)
class Run:
    scenario: str
    controller: str
    seed: int
    outcome: Outcome
    at_s: float | None
    failed: int
    reason: str


Act = tuple[Outcome, str] | None


class Controller(Protocol):
    period: int  # seconds between actions
    rules: bool  # reads the evaluated rules (ours); the peers query raw series

    def act(self, t: int) -> Act: ...


@dataclass
class MemoryStore:
    state: RolloutState | None = None

    def load(self) -> RolloutState | None:
        return self.state

    def save(self, state: RolloutState) -> None:
        self.state = state

    def read_intent(self) -> Intent | None:
        return None

    def clear_intent(self, intent: Intent) -> None:
        pass


class Notifier:
    def notify(self, event: RolloutEvent) -> None:
        pass


def golden() -> GoldenResult:
    return GoldenResult(True, "not checked in the benchmark")


PHASES: dict[str, Outcome] = {
    "Promoted": "promoted",
    "RolledBack": "rolled_back",
    "Paused": "paused",
}


class Modelcanary:
    """The real engine, judge and stepper, through the ports."""

    rules = True

    def __init__(self, world: World, prom: Prometheus, spec: RolloutSpec) -> None:
        self.period = TICK_S
        self.now = 0.0
        self.engine = Engine(prom, Notifier(), clock=lambda: EPOCH + self.now)
        self.rollout = Rollout("bench", spec, MemoryStore(), world, golden)

    def act(self, t: int) -> Act:
        self.now = t
        result = self.engine.tick([self.rollout])[0]
        outcome = PHASES.get(result.state.phase)
        if outcome is None:
            return None
        return outcome, result.decision.reason if result.decision else ""


class Flagger:
    """Flagger's analysis loop with its documented example settings (module docstring)."""

    rules = False

    def __init__(self, world: World, prom: Prometheus, interval: int = 30) -> None:
        self.world, self.prom, self.period = world, prom, interval
        self.step, self.max_weight, self.threshold, self.window = 10, 50, 5, 60
        self.failed = 0

    def check(self, t: int) -> str | None:
        """Why the metric checks fail, or None when they pass."""
        try:
            seen = self.prom.query(CANARY, t, self.window)
        except PrometheusDown as exc:
            return f"Prometheus query failed: {exc}"
        if seen is None or seen.requests <= 0 or seen.p99_s is None:
            return "no values found: canary probably not receiving traffic"
        success = 100 * (1 - seen.errors / seen.requests)
        if success < 99:
            return f"success rate {success:.2f}% < 99%"
        if seen.p99_s * 1000 > 500:
            return f"request duration {seen.p99_s * 1000:.0f}ms > 500ms"
        return None

    def act(self, t: int) -> Act:
        if self.failed >= self.threshold:
            self.world.route(0, False)
            return "rolled_back", f"failed checks threshold reached {self.failed}"
        if self.world.weight == 0:
            self.world.route(self.step, False)
            return None
        if self.check(t) is not None:
            self.failed += 1
            return None
        if self.world.weight >= self.max_weight:
            self.world.route(100, True)
            return "promoted", "checks passed at maxWeight"
        self.world.route(min(self.world.weight + self.step, self.max_weight), False)
        return None


class Argo:
    """Argo Rollouts' canary steps with a background success-rate analysis."""

    rules = False

    def __init__(self, world: World, prom: Prometheus, failure_limit: int) -> None:
        self.world, self.prom, self.failure_limit = world, prom, failure_limit
        self.period, self.pause, self.window, self.error_limit = 30, 60, 300, 4
        self.steps = (5, 10, 25, 50)
        self.index, self.step_at = -1, 0
        self.failed = self.errors = 0

    def measure(self, t: int) -> str | None:
        """Why the analysis run ended (Failed or Error), or None while it runs."""
        try:
            seen = self.prom.query(CANARY, t, self.window)
        except PrometheusDown:
            seen, error = None, True
        else:
            error = seen is None  # an empty vector: result[0] cannot be evaluated
        if error or seen is None:
            self.errors += 1
            if self.errors > self.error_limit:
                return f"consecutiveErrors ({self.errors}) > consecutiveErrorLimit (4)"
            return None
        self.errors = 0
        value = 1 - seen.errors / seen.requests if seen.requests > 0 else math.nan
        if not value >= 0.99:
            self.failed += 1
        if self.failed > self.failure_limit:
            return f"success-rate {value:.4f} failed {self.failed} > failureLimit"
        return None

    def act(self, t: int) -> Act:
        if self.index < 0:
            self.index, self.step_at = 0, t
            self.world.route(self.steps[0], False)
        ended = self.measure(t)
        if ended is not None:
            self.world.route(0, False)
            return "rolled_back", ended
        if t - self.step_at >= self.pause:
            self.index, self.step_at = self.index + 1, t
            if self.index == len(self.steps):
                self.world.route(100, True)
                return "promoted", "all steps completed"
            self.world.route(self.steps[self.index], False)
        return None


def make_spec(profile: Profile, overrides: dict[str, Any]) -> RolloutSpec:
    """The rollout spec's defaults with the profile's thresholds, and a scenario's overrides."""
    p = profile
    analysis = {
        "errorRatio": {"max": p.error_ratio_max, "maxAboveStable": p.canary_error_margin},
        "latencyP99": {
            "maxSeconds": p.latency_p99_max_s,
            "maxRatioToStable": p.canary_latency_ratio,
            "ratioFloorSeconds": p.canary_latency_floor_s,
        },
    }
    data = {
        "model": "bench",
        "stable": {"version": "1"},
        "canary": {"version": "2"},
        **overrides,
        "analysis": {**analysis, **overrides.get("analysis", {})},
    }
    return parse_spec(data, "bench_decisions")


CONTROLLERS: dict[str, Callable[[World, Prometheus, RolloutSpec], Controller]] = {
    "modelcanary": Modelcanary,
    "flagger": lambda world, prom, spec: Flagger(world, prom),
    "argo": lambda world, prom, spec: Argo(world, prom, failure_limit=0),
    "argo-fl3": lambda world, prom, spec: Argo(world, prom, failure_limit=3),
}


@cache
def profile_named(name: str) -> Profile:
    return load_profile(name)


def simulate(scenario: Scenario, controller: str, seed: int, settings: Settings) -> Run:
    """One rollout of one scenario under one controller."""
    profile = profile_named(settings.profile)
    spec = make_spec(profile, scenario.spec)
    index = next(i for i, s in enumerate(SCENARIOS) if s.name == scenario.name)
    rng = np.random.default_rng([seed, index])
    stable = Behaviour(scenario.stable_error, latency_probs(MEDIAN_S, P99_S))
    world = World(rng, scenario.rate, stable, scenario.replicas)
    slower = scenario.canary_slower
    world.behaviour[CANARY] = Behaviour(
        scenario.canary_error,
        latency_probs(MEDIAN_S * slower, P99_S * slower, scenario.slow_share, scenario.slow_factor),
    )
    scrape, offset = scenario.scrape_s or settings.scrape_s, scenario.canary_offset
    evaluation_offset = scrape // 3
    horizon = int(spec.progress_deadline_s) + 300
    key = RolloutKey(spec.model, spec.stable.version, spec.canary.version)
    capacity = (HISTORY_S + horizon) // scrape + 4
    prom = Prometheus(world, profile, key, capacity, scenario.gap)
    for k, sample in enumerate(world.history(HISTORY_S, scrape)[:-1]):
        for slot in range(scenario.replicas):
            prom.add(0, slot, -HISTORY_S + (k + 1) * scrape, sample[slot])
    agent = CONTROLLERS[controller](world, prom, spec)
    times = [scrape, TICK_S, agent.period, *(scenario.gap or ()), *(scenario.burst or ())]
    times += [at for at, _ in scenario.scale] + [scenario.restart_at or 0, offset]
    dt = math.gcd(evaluation_offset or scrape, *times, scenario.crash_at or 0)
    scaling = dict(scenario.scale)
    t = 0
    while t < horizon:
        if scenario.crash_at is not None and t >= scenario.crash_at:
            world.down[CANARY] = True
        if t in scaling:
            world.scale(scaling[t])
        if t == scenario.restart_at:
            world.restart(0)
        world.burst = scenario.burst is not None and scenario.burst[0] <= t < scenario.burst[1]
        if t % scrape == 0:
            prom.scrape(t, (STABLE,) if offset else (STABLE, CANARY))
        if offset and t % scrape == offset:
            prom.scrape(t, (CANARY,))
        if agent.rules and t % scrape == evaluation_offset:
            prom.evaluate(t)
        if t % agent.period == 0:
            prom.now = t
            acted = agent.act(t)
            if acted is not None:
                return Run(
                    scenario.name, controller, seed, acted[0], t, world.canary_failed, acted[1]
                )
        world.serve(dt)
        t += dt
    return Run(scenario.name, controller, seed, "running", None, world.canary_failed, "")


def simulate_all(task: tuple[Scenario, int, Settings]) -> list[Run]:
    scenario, seed, settings = task
    return [simulate(scenario, c, seed, settings) for c in settings.controllers]


def summarize(scenario: Scenario, controller: str, runs: Sequence[Run]) -> dict[str, Any]:
    outcomes: tuple[str, ...] = ("promoted", "rolled_back", "paused", "running")
    counts = {o: sum(r.outcome == o for r in runs) for o in outcomes}
    decided = [r.at_s for r in runs if r.at_s is not None]
    return {
        "scenario": scenario.name,
        "expected": scenario.expected,
        "controller": controller,
        **counts,
        "right": sum(r.outcome in RIGHT[scenario.expected] for r in runs),
        "runs_total": len(runs),
        "median_decision_s": statistics.median(decided) if decided else None,
        "median_failed": statistics.median(r.failed for r in runs),
        "reasons": _top_reasons(runs),
        "runs": [[r.seed, r.outcome, r.at_s, r.failed] for r in runs],  # seed, outcome, s, failed
    }


def _top_reasons(runs: Sequence[Run], keep: int = 3) -> list[str]:
    """The commonest decision reasons, numbers stripped so that alike ones group."""
    shapes: dict[str, int] = {}
    for run in runs:
        shape = "".join("#" if c.isdigit() else c for c in run.reason)
        while "##" in shape or "#.#" in shape:
            shape = shape.replace("##", "#").replace("#.#", "#")
        shapes[f"{run.outcome}: {shape}"] = shapes.get(f"{run.outcome}: {shape}", 0) + 1
    ordered = sorted(shapes.items(), key=lambda item: -item[1])[:keep]
    return [f"{n}x {shape}" for shape, n in ordered]


def table(summaries: Sequence[dict[str, Any]]) -> str:
    header = (
        "scenario|expect|controller|promoted|rolled back|paused|running|right|decision s|failed"
    )
    rows = [header.split("|")]
    last = ""
    for s in summaries:
        t = s["median_decision_s"]
        rows.append(
            [
                s["scenario"] if s["scenario"] != last else "",
                s["expected"] if s["scenario"] != last else "",
                s["controller"],
                str(s["promoted"]),
                str(s["rolled_back"]),
                str(s["paused"]),
                str(s["running"]),
                f"{s['right']}/{s['runs_total']}",
                "-" if t is None else f"{t:.0f}",
                f"{s['median_failed']:g}",
            ]
        )
        last = s["scenario"]
    return format_table(rows)


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--scenarios", default="", help="comma-separated names (default: all)")
    parser.add_argument("--controllers", default=",".join(Settings.controllers))
    parser.add_argument("--profile", default="production", choices=sorted(PROFILES))
    parser.add_argument("--scrape", default="15s", help="scrape and rule evaluation interval")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    known = {s.name: s for s in SCENARIOS}
    names = [n for n in args.scenarios.split(",") if n] or list(known)
    controllers = tuple(c for c in args.controllers.split(",") if c)
    unknown = [n for n in names if n not in known] + [
        c for c in controllers if c not in CONTROLLERS
    ]
    if unknown:
        parser.error(
            f"unknown: {', '.join(unknown)}; scenarios: {', '.join(known)}; "
            f"controllers: {', '.join(CONTROLLERS)}"
        )
    scrape = parse_duration(args.scrape)
    if scrape != int(scrape) or scrape < 1:
        parser.error("--scrape: whole seconds")
    settings = Settings(args.profile, int(scrape), controllers)
    tasks = [(known[n], seed, settings) for n in names for seed in range(args.seeds)]
    started = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = [r for batch in pool.map(simulate_all, tasks, chunksize=4) for r in batch]
    else:
        runs = [r for task in tasks for r in simulate_all(task)]
    elapsed = time.perf_counter() - started
    summaries = [
        summarize(known[n], c, [r for r in runs if r.scenario == n and r.controller == c])
        for n in names
        for c in controllers
    ]
    print(table(summaries))
    print(
        f"{len(runs)} runs in {elapsed:.0f} s ({args.jobs} jobs); decision s and failed "
        "are medians (decision: since the rollout began, over runs that decided)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "settings": {
                    **asdict(settings),
                    "seeds": args.seeds,
                    "tick_s": TICK_S,
                    "history_s": HISTORY_S,
                    "stable": {"error": BASE_ERROR, "median_s": MEDIAN_S, "p99_s": P99_S},
                    "commit": _commit(),
                    "machine": f"{platform.machine()}, {platform.python_version()}",
                    "elapsed_s": round(elapsed, 1),
                },
                "scenarios": [
                    {k: v for k, v in asdict(known[n]).items() if v not in (None, {})}
                    for n in names
                ],
                "results": summaries,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
