"""`modelcanary demo`: the whole loop on one machine, five rollouts, one report.

Starts the local stack (real Triton, Prometheus and Alertmanager, the gateway), drives
steady load through the gateway, and runs: version 2 (healthy, better than version 1 on
the labelled holdout) promoted through every step; version 5 (trained with classes 3 and 8
swapped: fast, no errors, wrong) rolled back by the holdout gate before any user request;
version 4 (labels shifted by one), with the gate off, rolled back by the shadow comparison
before any user request; version 3 with injected errors, rolled back; version 3 again with
injected latency, rolled back. Faults are injected once the canary takes traffic, and the
time from the fault to canary weight 0 is measured. Ends with a summary and an HTML report.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from modelcanary import metrics_contract
from modelcanary.adapters.prometheus import PrometheusSource
from modelcanary.alerts.profile import Profile, load_profile
from modelcanary.load.generator import BackgroundLoad, request_bodies
from modelcanary.local import report
from modelcanary.local.controller import (
    SOURCE,
    LocalController,
    ProgressPrinter,
    wait_until_quiet,
)
from modelcanary.local.stack import LocalStack, StackOptions
from modelcanary.rollout.engine import TickResult
from modelcanary.rollout.ports import GateResult
from modelcanary.rollout.spec import RolloutSpec, parse_spec
from modelcanary.rollout.state import RolloutState
from modelcanary.serving.faults import FaultSpec, set_faults
from modelcanary.tables import format_table

MODEL = "digits"


@dataclass(frozen=True)
class Scenario:
    title: str
    stable: int
    canary: int
    fault: FaultSpec | None = None
    gate: bool = True  # the holdout gate on (off: the shadow comparison must catch it)


SCENARIOS = (
    Scenario("healthy version 2", 1, 2),
    Scenario("version 5, classes 3 and 8 swapped", 2, 5),
    Scenario("version 4, labels shifted (gate off)", 2, 4, gate=False),
    Scenario("version 3 with injected errors", 2, 3, FaultSpec(error_ratio=0.3)),
    Scenario("version 3 with injected latency", 2, 3, FaultSpec(latency_ms=400)),
)
# Only the versions the scenarios use are loaded into Triton (the repository holds more).
SERVED = tuple(sorted({v for s in SCENARIOS for v in (s.stable, s.canary)}))


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    phase: str
    steps: str
    duration_s: float
    fault_to_zero_s: float | None
    canary_requests: int  # user requests the canary answered
    gate: str  # the holdout gate's verdict in short
    shadow: str  # the shadow comparison's agreement at the end
    failed_requests: int  # the canary's failed attempts (its server errors)
    failed_user_requests: int  # of those, the ones no retry on stable answered: goal 0
    reason: str
    started_at: float
    ended_at: float


def demo_spec(profile: Profile, stable: int, canary: int, gate: bool = True) -> RolloutSpec:
    """The demo's rollout: short steps, thresholds from the alert profile, a short shadow."""
    return parse_spec(
        {
            "model": MODEL,
            "stable": {"version": str(stable)},
            "canary": {"version": str(canary)},
            "steps": [10, 25, 50, 100],
            "interval": "8s",
            "analysis": {
                "failureLimit": 0,
                "errorRatio": {
                    "max": profile.error_ratio_max,
                    "maxAboveStable": profile.canary_error_margin,
                },
                "latencyP99": {
                    "maxSeconds": profile.latency_p99_max_s,
                    "maxRatioToStable": 3.0,
                    "ratioFloorSeconds": profile.canary_latency_floor_s,
                },
                "noData": {"after": "30s", "action": "pause"},
                # a minute-long demo cannot gather the evidence a production rollout waits for
                "beforeFull": {"errorRatioAboveStable": 0.05, "maxWait": "10s"},
                "holdout": {"enabled": gate},
            },
            # half of stable's requests compared: the demo profile's pairs in a few seconds
            "shadow": {
                "percent": 50,
                "minSamples": profile.agreement_min_pairs,
                "minAgreement": profile.agreement_min,
                "maxDuration": "20s",
            },
            "progressDeadline": "5m",
        },
        "demo",
    )


class Demo:
    """Runs the scenarios against one local stack; `run` returns the exit code."""

    def __init__(self, repo: Path, run_dir: Path, rate: float, say: Callable[[str], None]) -> None:
        self.repo, self.run_dir, self.rate, self.say = repo, run_dir, rate, say
        self.profile = load_profile("demo")
        self.stop = threading.Event()

    def run(self, stop: threading.Event) -> int:
        self.stop = stop
        started = time.time()
        shutil.rmtree(self.run_dir / "rollouts", ignore_errors=True)  # the demo starts afresh
        options = StackOptions(self.repo, MODEL, stable=1, run_dir=self.run_dir, versions=SERVED)
        stack = LocalStack(options, self.say)
        urls = stack.start()
        load = BackgroundLoad(urls["gateway"], MODEL, request_bodies(self.repo, MODEL), self.rate)
        outcomes: list[Outcome] = []
        try:
            self.say(f"steady load: {self.rate:g} requests/s through the gateway {urls['gateway']}")
            load.start()
            time.sleep(3)  # a baseline for the stable version before the first rollout
            for scenario in SCENARIOS:
                if stop.is_set():
                    break
                outcomes.append(self.rollout(scenario, urls))
            time.sleep(3)  # two scrapes, so the report's charts end on the final weights
            ended = time.time()
            path = self._report(urls, outcomes, started, ended)
        finally:
            load.stop()
            stack.stop()
        self._summary(outcomes, path, ended - started)
        expected = ("Promoted", "RolledBack", "RolledBack", "RolledBack", "RolledBack")
        return 0 if tuple(o.phase for o in outcomes) == expected else 1

    def rollout(self, scenario: Scenario, urls: dict[str, str]) -> Outcome:
        """One rollout of the scenario, the fault injected once the canary takes traffic."""
        spec = demo_spec(self.profile, scenario.stable, scenario.canary, scenario.gate)
        self.say("")
        self.say(f"=== rollout: {scenario.title} ({scenario.stable} -> {scenario.canary}) ===")
        if not wait_until_quiet(urls, MODEL, str(scenario.canary), self.stop, self.say):
            self.say(f"alerts for version {scenario.canary} did not resolve; starting anyway")
        controller = LocalController(self.run_dir, spec)
        for line in controller.prepare():
            self.say(line)
        printer = ProgressPrinter(spec, 0, self.say)
        fault_at: list[float] = []
        zero_at: list[float] = []
        canary = str(scenario.canary)
        answered_before = _answered(urls["gateway"], canary)
        failed_before = _answered(urls["gateway"], canary, errors_only=True)
        rescued_before = _retried(urls["gateway"], canary)
        started = time.time()

        def on_tick(result: TickResult) -> None:
            printer(result)
            state = result.state
            if scenario.fault is not None and not fault_at and state.phase == "Progressing":
                set_faults(Path(urls["faults_dir"]), MODEL, scenario.canary, scenario.fault)
                fault_at.append(time.time())
                self.say(
                    f"    fault injected into version {scenario.canary}: "
                    f"{scenario.fault.describe()}"
                )
            if fault_at and not zero_at and state.weight == 0 and state.applied:
                zero_at.append(time.time())

        state = controller.run(self.stop, on_tick)
        ended = time.time()
        if scenario.fault is not None:
            set_faults(Path(urls["faults_dir"]), MODEL, scenario.canary, FaultSpec())
        failed = _answered(urls["gateway"], canary, errors_only=True) - failed_before
        rescued = _retried(urls["gateway"], canary) - rescued_before
        reached = max(
            (t.step for t in state.history if t.action in ("start", "advance")), default=-1
        )
        return Outcome(
            scenario=scenario,
            phase=state.phase,
            steps=f"{reached + 1}/{len(spec.steps)}",
            duration_s=ended - started,
            fault_to_zero_s=zero_at[0] - fault_at[0] if fault_at and zero_at else None,
            canary_requests=_answered(urls["gateway"], canary) - answered_before,
            gate=_gate(state.gate),
            shadow=shadow_agreement(state),
            failed_requests=failed,
            failed_user_requests=failed - rescued,
            reason=state.history[-1].reason if state.history else "",
            started_at=started,
            ended_at=ended,
        )

    def _report(
        self, urls: dict[str, str], outcomes: list[Outcome], start: float, end: float
    ) -> Path:
        source = PrometheusSource(urls["prometheus"], SOURCE, 0)
        charts = report.charts(source.query_range, report.version_panels(MODEL, SOURCE), start, end)
        markers = []
        summary = [list(HEADER)]
        for o in outcomes:
            markers.append((o.started_at, f"start: {o.scenario.title}"))
            markers.append((o.ended_at, f"{o.phase}: {o.scenario.title}"))
            summary.append(_row(o))
        document = report.Report(
            title="modelcanary demo",
            start=start,
            end=end,
            charts=charts,
            markers=markers,
            summary=summary,
            notifications=_notifications(Path(urls["oncall_log"])),
            notes=[
                f"Steady load of {self.rate:g} requests/s through the gateway; alert profile "
                f"demo (window {self.profile.window}, 1 s scrape and evaluation)."
            ],
        )
        path = self.run_dir / "report.html"
        path.write_text(report.render(document))
        (self.run_dir / "report.json").write_text(
            json.dumps([_row_json(o) for o in outcomes], indent=2) + "\n"
        )
        return path

    def _summary(self, outcomes: list[Outcome], path: Path, total_s: float) -> None:
        self.say("")
        self.say("=== summary ===")
        rows = [list(HEADER)]
        rows += [_row(o) for o in outcomes]
        self.say(format_table(rows))
        self.say(f"report: {path.resolve()}  (whole demo {total_s:.0f}s)")


HEADER = (
    "rollout",
    "outcome",
    "holdout gate",
    "shadow agreement",
    "steps",
    "duration",
    "fault to weight 0",
    "canary requests",
    "failed canary requests",
    "failed user requests",
    "why",
)


def _row(o: Outcome) -> list[str]:
    fault = "-" if o.fault_to_zero_s is None else f"{o.fault_to_zero_s:.1f}s"
    return [
        o.scenario.title,
        o.phase,
        o.gate,
        o.shadow,
        o.steps,
        f"{o.duration_s:.0f}s",
        fault,
        str(o.canary_requests),
        str(o.failed_requests),
        str(o.failed_user_requests),
        o.reason,
    ]


def _row_json(o: Outcome) -> dict[str, object]:
    fault = None if o.fault_to_zero_s is None else round(o.fault_to_zero_s, 2)
    return {
        "rollout": o.scenario.title,
        "stable": o.scenario.stable,
        "canary": o.scenario.canary,
        "outcome": o.phase,
        "holdout_gate": o.gate,
        "shadow_agreement": o.shadow,
        "steps": o.steps,
        "duration_s": round(o.duration_s, 2),
        "fault_to_weight_zero_s": fault,
        "canary_requests": o.canary_requests,
        "failed_canary_requests": o.failed_requests,
        "failed_user_requests": o.failed_user_requests,
        "reason": o.reason,
    }


def _gate(result: GateResult | None) -> str:
    """`not worse: 0.981 vs 0.914 [+0.039, +0.095] n=360` (canary vs stable, difference)."""
    if result is None:
        return "-"
    n = result.numbers
    if "holdout_canary" not in n:
        return result.outcome
    return (
        f"{result.outcome}: {float(n['holdout_canary']):.3f} vs {float(n['holdout_stable']):.3f} "
        f"[{float(n['holdout_difference_low']):+.3f}, {float(n['holdout_difference_high']):+.3f}]"
        f" n={n['holdout_samples']}"
    )


def shadow_agreement(state: RolloutState) -> str:
    """The shadow comparison in the last analysis: `97.5% of 240 pairs` agreeing top-1 (a
    classifier), `99.2% of 240 pairs within tolerance` (numeric outputs: the one with most
    evidence against it), both for a model with both; `-` when the rollout did not shadow."""
    checks = {c.name: c for c in state.analysis.checks} if state.analysis else {}
    shown = []
    agreement, numeric = checks.get("prediction_agreement"), checks.get("numeric_tolerance")
    if agreement is not None and agreement.value is not None:
        shown.append(f"{agreement.value:.1%} of {agreement.samples} pairs")
    if numeric is not None and numeric.value is not None:  # its value: the share outside
        shown.append(f"{1 - numeric.value:.1%} of {numeric.samples} pairs within tolerance")
    return "; ".join(shown) or "-"


def _answered(gateway: str, version: str, errors_only: bool = False) -> int:
    """User requests (or only server errors) the gateway has answered for a version of the
    model so far."""
    return _summed(
        gateway,
        f"{metrics_contract.GATEWAY_REQUESTS}_total",
        lambda labels: (
            labels.get("version") == version
            and (not errors_only or labels.get("code", "").startswith("5"))
        ),
    )


def _retried(gateway: str, version: str) -> int:
    """Requests the version failed that the gateway's retry on stable answered so far."""
    return _summed(
        gateway,
        f"{metrics_contract.GATEWAY_RETRIES}_total",
        lambda labels: (
            labels.get("from_version") == version and labels.get("outcome") == "answered"
        ),
    )


def _summed(gateway: str, name: str, keep: Callable[[dict[str, str]], bool]) -> int:
    """The sum of the gateway's samples of one counter of the model that `keep` keeps."""
    total = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{gateway}/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("model") == MODEL and keep(sample.labels):
                total += sample.value
    return int(total)


def _notifications(log: Path) -> list[dict[str, str]]:
    """Each alert's firing and resolved notification once, in the order they arrived."""
    seen: set[tuple[str, str, str]] = set()
    rows = []
    lines = log.read_text().splitlines() if log.exists() else []
    for line in lines:
        record = json.loads(line)
        key = (record["channel"], record.get("fingerprint", ""), record.get("status", ""))
        if key in seen:
            continue
        seen.add(key)
        labels, annotations = record.get("labels", {}), record.get("annotations", {})
        rows.append(
            {
                "time": time.strftime("%H:%M:%S", time.localtime(record.get("received_at", 0))),
                "channel": record["channel"],
                "status": record.get("status", ""),
                "alertname": labels.get("alertname", ""),
                "severity": labels.get("severity", ""),
                "version": labels.get("version", ""),
                "description": annotations.get("description", ""),
            }
        )
    return rows
