"""Observations from Prometheus: one grouped query per signal for all rollouts.

Reads the normalized series of one metrics source (`modelcanary:*{source=...}`), the
shadow comparator's cumulative pairs and the `ALERTS` series, and turns them into the
judge's observations per rollout. An
unreachable or failing Prometheus yields observations with a problem and no stats: no
data, never healthy.

No work without news: each `observe` first asks one small query when the series it reads
were last written (the normalization rules' group, the alert rules' ALERTS, the
comparator's scrapes), and reads them again only when that moved; otherwise it answers
from what it read last. Rules are evaluated every 15 to 30 s in production and a tick
comes every 1 to 10 s, and a read is about 60 series per rollout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as StillReading
from dataclasses import dataclass

import httpx

from modelcanary import metrics_contract as mc
from modelcanary.alerts import promql as q
from modelcanary.errors import one_line
from modelcanary.rollout.ports import (
    Counts,
    FiringAlert,
    InputDrift,
    NumericCounts,
    Observations,
    RolloutKey,
    ShadowCounts,
    VersionStats,
)


class QueryError(Exception):
    pass


Versions = dict[tuple[str, str], float]
STALE_S = 15.0  # a reading older than this is not answered while a read is in progress
# reads on their own thread begin at most every PACE times the last read's duration, so
# that Prometheus and the reader spend at most half their time on them
PACE = 2.0


@dataclass(frozen=True)
class Reading:
    """One read of every series `observe` needs, for all rollouts."""

    windowed: tuple[Versions, Versions, Versions]  # requests, errors, P99 by version
    totals: dict[tuple[str, str], dict[str, Counts]]
    shadow: dict[tuple[str, str], ShadowCounts]
    drift: dict[tuple[str, str], InputDrift]
    alerts: dict[str, tuple[FiringAlert, ...]]  # by model


@dataclass(frozen=True)
class Latest:
    """The last reading, the news it was read at, and when Prometheus last confirmed it
    (time.monotonic() as the news query was sent)."""

    news: tuple[tuple[str, float], ...]
    reading: Reading
    at: float


class PrometheusSource:
    """The metrics source port on Prometheus' HTTP API."""

    def __init__(
        self,
        url: str,
        source: str,
        window_s: float,
        client: httpx.Client | None = None,
        wait_s: float | None = None,
    ) -> None:
        """`wait_s`: how long `observe` waits for a read in progress (None: every read is
        in the caller's thread, and every answer as fresh as Prometheus)."""
        self.url = url.rstrip("/")
        self.source = source
        self.window_s = window_s
        self.client = client or httpx.Client(timeout=5.0)
        self.wait_s = wait_s
        self.last: Latest | None = None
        self._reads = None if wait_s is None else ThreadPoolExecutor(1, "prometheus")
        self._pending: Future[Reading] | None = None
        self._next_read = 0.0  # time.monotonic() when the next read may begin

    def query(self, expression: str) -> list[tuple[dict[str, str], float]]:
        """An instant query's vector as (labels, value) pairs."""
        endpoint = f"{self.url}/api/v1/query"
        try:
            response = self.client.get(endpoint, params={"query": expression})
        except httpx.HTTPError as exc:
            raise QueryError(f"Prometheus at {self.url} is unreachable: {one_line(exc)}") from None
        try:
            body = response.json()
        except ValueError:
            raise QueryError(
                f"Prometheus at {endpoint} answered {response.status_code}, not JSON"
            ) from None
        if response.status_code != 200 or body.get("status") != "success":
            reason = body.get("error", response.status_code)
            raise QueryError(f"Prometheus at {endpoint} rejected {expression!r}: {reason}")
        data = body.get("data", {})
        if data.get("resultType") != "vector":
            raise QueryError(
                f"Prometheus returned {data.get('resultType')!r} for {expression!r}, not a vector"
            )
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def query_range(
        self, expression: str, start: float, end: float, step_s: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """A range query's matrix as (labels, [(time, value)]) pairs, for reports."""
        params: dict[str, str | float] = {
            "query": expression,
            "start": start,
            "end": end,
            "step": step_s,
        }
        endpoint = f"{self.url}/api/v1/query_range"
        try:
            response = self.client.get(endpoint, params=params)
            body = response.json()
        except httpx.HTTPError as exc:
            raise QueryError(f"Prometheus at {self.url} is unreachable: {one_line(exc)}") from None
        except ValueError:
            raise QueryError(f"Prometheus at {endpoint} answered {response.status_code}") from None
        if body.get("status") != "success":
            raise QueryError(f"Prometheus rejected {expression!r}: {body.get('error')}")
        return [
            (item["metric"], [(float(t), float(v)) for t, v in item["values"]])
            for item in body["data"]["result"]
        ]

    def observe(self, rollouts: Sequence[RolloutKey]) -> dict[RolloutKey, Observations]:
        """Observations for every rollout, whatever their number: one query when nothing
        was written since the last read, eleven when something was."""
        try:
            reading = self._reading()
        except QueryError as exc:
            return {key: Observations(None, None, problem=str(exc)) for key in rollouts}
        return {
            key: Observations(
                stable=self._stats(key.model, key.stable, *reading.windowed, reading.totals),
                canary=self._stats(key.model, key.canary, *reading.windowed, reading.totals),
                alerts=reading.alerts.get(key.model, ()),
                shadow=reading.shadow.get((key.model, key.canary)),
                drift=reading.drift.get((key.model, key.canary)),
            )
            for key in rollouts
        }

    def latest(self) -> Reading:
        """The series as Prometheus has them now: read again only if written since the
        last read. A failed query forgets the last reading."""
        at = time.monotonic()
        try:
            news = self.news()
            if self.last is None or self.last.news != news:
                self.last = Latest(news, self.read(), at)
                self._next_read = at + PACE * (time.monotonic() - at)
            else:
                self.last = Latest(news, self.last.reading, at)
        except QueryError:
            self.last = None
            raise
        return self.last.reading

    def close(self) -> None:
        """Stop the reading thread (a read in progress ends by itself)."""
        if self._reads is not None:
            self._reads.shutdown(wait=False, cancel_futures=True)

    def _reading(self) -> Reading:
        """The latest reading, or the last one while a read is in progress (`wait_s`)."""
        if self._reads is None:
            return self.latest()
        now, last, pending = time.monotonic(), self.last, self._pending
        recent = last is not None and now - last.at <= STALE_S
        if pending is None or pending.done():
            if last is not None and recent and now < self._next_read:
                return last.reading  # paced: the last read ended a moment ago
            pending = self._pending = self._reads.submit(self.latest)
        if last is None or not recent:
            return pending.result()  # nothing recent to answer with: this read's, or its error
        try:
            return pending.result(timeout=self.wait_s)
        except StillReading:
            return last.reading

    def news(self) -> tuple[tuple[str, float], ...]:
        """When each kind of series `read` reads was last written: one small query. The
        normalization group writes its series in order at one evaluation time, the
        latency buckets last, so their +Inf bucket moves once the group is written."""
        source = self.source
        latest = {
            "requests": q.selector(q.REQUESTS_TOTAL, source),
            "buckets": f'{q.LATENCY_BUCKETS_TOTAL}{{source="{source}", le="+Inf"}}',
            "alerts": 'ALERTS{model!=""}',
            "shadow": f"{mc.SHADOW_PAIRS}_total",
            "drift": mc.SHADOW_DRIFT_SAMPLES,
        }
        expression = " or ".join(
            f'label_replace(max(timestamp({selector})), "news", "{name}", "", "")'
            for name, selector in latest.items()
        )
        return tuple(
            sorted((labels.get("news", ""), value) for labels, value in self.query(expression))
        )

    def read(self) -> Reading:
        """Every series the observations need: ten queries."""
        requests = self._by_version(q.selector(q.REQUESTS, self.source))
        errors = self._by_version(q.selector(q.ERRORS, self.source))
        p99 = self._by_version(q.selector(q.LATENCY_P99, self.source))
        totals = self._totals()
        shadow, drift = self._shadow(), self._drift()
        alerts: dict[str, list[FiringAlert]] = {}
        for labels, _ in self.query('ALERTS{model!=""}'):
            alerts.setdefault(labels.get("model", ""), []).append(FiringAlert.from_labels(labels))
        found = {model: tuple(each) for model, each in alerts.items()}
        return Reading((requests, errors, p99), totals, shadow, drift, found)

    def _drift(self) -> dict[tuple[str, str], InputDrift]:
        """Every canary's worst input feature and the samples scored: two queries."""
        samples = self._by_version(f"max by (model, version) ({mc.SHADOW_DRIFT_SAMPLES})")
        found = {}
        for labels, psi in self.query(f"topk by (model, version) (1, {mc.SHADOW_DRIFT})"):
            version = (labels.get("model", ""), labels.get("version", ""))
            found[version] = InputDrift(psi, labels.get("feature", ""), samples.get(version, 0.0))
        return found

    def _shadow(self) -> dict[tuple[str, str], ShadowCounts]:
        """Every canary's compared pairs (all outputs, and classification ones), agreeing
        pairs, and each numeric output's pairs and pairs within tolerance, in one query of
        the comparator's counters: all from the same scrapes, so the agreeing pairs never
        outnumber the pairs. (Two queries, or two recorded series, may straddle a scrape
        that Prometheus ingests in between.)"""
        names = f"{mc.SHADOW_PAIRS}_total|{mc.SHADOW_AGREEING}_total"
        by = "__name__, model, version, kind, output"
        expression = f'sum by ({by}) ({{__name__=~"{names}"}})'
        found: dict[tuple[str, str], dict[tuple[str, str, bool], float]] = {}
        for labels, value in self.query(expression):
            version = (labels.get("model", ""), labels.get("version", ""))
            paired = labels.get("__name__") == f"{mc.SHADOW_PAIRS}_total"
            key = (labels.get("kind", ""), labels.get("output", ""), paired)
            found.setdefault(version, {})[key] = value
        return {
            version: _shadow_counts(counters)
            for version, counters in found.items()
            if any(paired for _, _, paired in counters)
        }

    def _totals(self) -> dict[tuple[str, str], dict[str, Counts]]:
        """Every version's cumulative counters per replica series: three queries for all
        rollouts."""
        replica = q.REPLICA
        requests = self._by_replica(q.selector(q.REQUESTS_TOTAL, self.source))
        errors = self._by_replica(q.selector(q.ERRORS_TOTAL, self.source))
        unit = q.SOURCES[self.source].latency_unit_s if self.source in q.SOURCES else 1.0
        buckets: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        # summed by the labels read, as the rule already sums them: the answer, about 60
        # series per rollout, leaves out each series' name and source (a third of its size)
        selector = q.selector(q.LATENCY_BUCKETS_TOTAL, self.source)
        for labels, value in self.query(f"sum by (model, version, {replica}, le) ({selector})"):
            series = (labels.get("model", ""), labels.get("version", ""), labels.get(replica, ""))
            try:
                bound = float(labels.get("le", "")) * unit
            except ValueError:
                continue
            buckets.setdefault(series, []).append((bound, value))
        found: dict[tuple[str, str], dict[str, Counts]] = {}
        for (model, version, name), count in requests.items():
            histogram = sorted(buckets.get((model, version, name), []))
            finite = tuple(b for b in histogram if b[0] != float("inf"))
            observed = next((n for le, n in histogram if le == float("inf")), 0.0)
            counts = Counts(count, errors.get((model, version, name), 0.0), finite, observed)
            found.setdefault((model, version), {})[name] = counts
        return found

    def _by_replica(self, expression: str) -> dict[tuple[str, str, str], float]:
        return {
            (labels.get("model", ""), labels.get("version", ""), labels.get(q.REPLICA, "")): value
            for labels, value in self.query(expression)
        }

    def _by_version(self, expression: str) -> dict[tuple[str, str], float]:
        return {
            (labels.get("model", ""), labels.get("version", "")): value
            for labels, value in self.query(expression)
        }

    def _stats(
        self,
        model: str,
        version: str,
        requests: dict[tuple[str, str], float],
        errors: dict[tuple[str, str], float],
        p99: dict[tuple[str, str], float],
        totals: dict[tuple[str, str], dict[str, Counts]],
    ) -> VersionStats | None:
        rate = requests.get((model, version))
        if rate is None:  # a new series has counters one scrape before it has a rate
            counted = totals.get((model, version))
            return None if counted is None else VersionStats(0.0, 0.0, None, counted)
        latency = p99.get((model, version))
        return VersionStats(
            requests=rate * self.window_s,
            errors=errors.get((model, version), 0.0) * self.window_s,
            p99_s=latency if latency is not None and latency == latency else None,  # NaN: none
            replicas=totals.get((model, version)),
        )


def _shadow_counts(counters: dict[tuple[str, str, bool], float]) -> ShadowCounts:
    """One canary's counters by (kind, output, pairs or agreeing) as the judge takes them."""

    def total(kind: str, paired: bool) -> float:
        return sum(v for (k, _, p), v in counters.items() if p == paired and k == kind)

    numeric = tuple(
        NumericCounts(output, value, counters.get((kind, output, False), 0.0))
        for (kind, output, paired), value in sorted(counters.items())
        if paired and kind == "numeric"
    )
    return ShadowCounts(
        total("classification", True),
        total("classification", False),
        sum(v for (_, _, paired), v in counters.items() if paired),
        numeric,
        classifies=any(k == "classification" for k, _, _ in counters),
    )
