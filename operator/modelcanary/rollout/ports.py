"""The engine's ports: what it needs from the world, and the values they exchange.

Each port is a small Protocol; the adapters package has one implementation per backend
(Prometheus, Alertmanager, the local gateway, KServe, Gateway API, files, Kubernetes
status) and the tests have fakes. Nothing here does I/O. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol

from modelcanary.errors import ModelcanaryError
from modelcanary.rollout.intents import Intent

if TYPE_CHECKING:
    from modelcanary.rollout.state import RolloutState

Clock = Callable[[], float]  # seconds since the epoch


@dataclass(frozen=True)
class RolloutKey:
    """Which series a rollout reads: the model and its two versions."""

    model: str
    stable: str
    canary: str


@dataclass(frozen=True)
class Counts:
    """Cumulative counters of one replica of a version as Prometheus last scraped them (or,
    as evidence, a version's counts since the rollout began): requests, server errors, and
    the latency histogram's finite cumulative buckets `(le seconds, count)` with its total
    (`observed`, the +Inf bucket; empty and 0 when the source has no histogram). They only
    grow, except when the replica restarts; the ledger (evidence.py) takes differences."""

    requests: float
    errors: float
    buckets: tuple[tuple[float, float], ...] = ()
    observed: float = 0.0


@dataclass(frozen=True)
class VersionStats:
    """Requests, server errors and P99 of one version over the analysis window, and the
    cumulative counters of each replica serving it, by series (its `instance`; None when
    the source could not give them)."""

    requests: float
    errors: float
    p99_s: float | None = None
    replicas: Mapping[str, Counts] | None = None

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests > 0 else 0.0


@dataclass(frozen=True)
class NumericCounts:
    """One numeric output's compared pairs, and those within the rollout's tolerance."""

    output: str
    pairs: float
    within: float


@dataclass(frozen=True)
class ShadowCounts:
    """The shadow comparator's cumulative counters for one canary: pairs of answers
    (stable's and the canary's to the same request) compared on classification outputs and
    how many of them agreed on the top-1 class, pairs compared on any output (data is
    arriving), and each numeric output's pairs within tolerance. `classifies`: the model
    has a classification output. They only grow, except when the comparator restarts."""

    pairs: float
    agreeing: float
    compared: float
    numeric: tuple[NumericCounts, ...] = ()
    classifies: bool = True


@dataclass(frozen=True)
class InputDrift:
    """How far the live inputs the comparator saw moved from stable's reference profile:
    the worst feature's PSI, and the live samples it was scored on."""

    psi: float
    feature: str
    samples: float


@dataclass(frozen=True)
class FiringAlert:
    name: str
    severity: str
    version: str
    state: Literal["firing", "pending"] = "firing"
    started_at: float | None = None  # a pushed alert's startsAt; None when not known

    @classmethod
    def from_labels(cls, labels: Mapping[str, str], started_at: float | None = None) -> FiringAlert:
        """From an alert's labels (Prometheus' `ALERTS` or Alertmanager's); `alertstate`
        pending makes it pending, anything else is firing."""
        state: Literal["firing", "pending"] = (
            "pending" if labels.get("alertstate") == "pending" else "firing"
        )
        return cls(
            labels.get("alertname", ""),
            labels.get("severity", ""),
            labels.get("version", ""),
            state,
            started_at,
        )


@dataclass(frozen=True)
class Observations:
    """What the engine saw. A version without stats had no data (or none could be read)."""

    stable: VersionStats | None
    canary: VersionStats | None
    canary_ready: bool = True
    alerts: tuple[FiringAlert, ...] = ()
    problem: str | None = None  # e.g. "Prometheus at ... unreachable": no data, never healthy
    shadow: ShadowCounts | None = None  # None: the comparator reported nothing
    drift: InputDrift | None = None  # None: no input profile, or nothing scored


@dataclass(frozen=True)
class GoldenResult:
    """The canary's answers to its golden samples against PyTorch's."""

    passed: bool
    worst: str  # e.g. "output 'logits' off by 3.1e-01 at sample 7"


GateOutcome = Literal["worse", "not worse", "not checked"]


@dataclass(frozen=True)
class GateResult:
    """The champion/challenger gate: the canary against stable on a labelled holdout, both
    as served. `summary` says it in words (both values with their intervals, the
    difference, the samples, the margin); `numbers` are the same for history and
    notifications."""

    outcome: GateOutcome
    summary: str
    numbers: dict[str, float | int | str] = field(default_factory=dict)


EventKind = Literal["promoted", "rolled_back", "paused"]


@dataclass(frozen=True)
class RolloutEvent:
    """Something the controller did to a rollout, and why, with the numbers."""

    kind: EventKind
    rollout: str
    model: str
    stable: str
    canary: str
    reason: str
    numbers: dict[str, float | int | str] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class MetricsSource(Protocol):
    def observe(self, rollouts: Sequence[RolloutKey]) -> dict[RolloutKey, Observations]:
        """What was seen of every rollout; a problem (no data) rather than an exception."""


class Router(Protocol):
    def route(self, weight: int, promoted: bool) -> None:
        """Send `weight` percent to the canary; `promoted` makes the canary the stable one."""


@dataclass(frozen=True)
class Split:
    """How a router splits a model's traffic now: percent per version, and its stable one."""

    weights: Mapping[str, int]
    stable: str


class SplitReader(Protocol):
    def split(self) -> Split:
        """The split the router applies now (read back, not what was last asked for)."""


class ShadowControl(Protocol):
    """Where the platform mirrors a share of stable's requests to the canary for the
    shadow comparison (the local gateway; a cluster's comparator)."""

    def start(self, percent: int) -> None:
        """Mirror `percent` of the requests stable serves to the canary (idempotent)."""

    def stop(self) -> None:
        """Mirror nothing (idempotent)."""


class StateNotSaved(ModelcanaryError):
    """The store could not save a state (a read-only or full disk); the message names where
    and why. The engine goes on: it rolls back without the record, and holds otherwise."""


class StateStore(Protocol):
    def load(self) -> RolloutState | None: ...

    def save(self, state: RolloutState) -> None: ...

    def read_intent(self) -> Intent | None: ...

    def clear_intent(self, intent: Intent) -> None: ...


class Notifier(Protocol):
    def notify(self, event: RolloutEvent) -> None: ...


GoldenCheck = Callable[[], GoldenResult]  # raises a ModelcanaryError when it cannot run
HoldoutGate = Callable[[], GateResult]  # raises a ModelcanaryError when it cannot run
Readiness = Callable[[], bool]  # the canary's readiness from its platform
