"""The gateway's Prometheus metrics, in a registry of its own."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelcanary import metrics_contract
from modelcanary.gateway.config import ModelRoute
from modelcanary.gateway.weights import WeightTable


class GatewayMetrics:
    """Per model and version: requests by code, client errors by reason, latency, the
    split's weight and the role."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # one declaration per metric, alike on purpose: its help and labels are what /metrics shows
        self.requests = Counter(
            metrics_contract.GATEWAY_REQUESTS,
            "Requests a version answered through the gateway, by model, version and the "
            "response code",
            ["model", "version", "code"],
            registry=self.registry,
        )
        self.client_errors = Counter(
            metrics_contract.GATEWAY_CLIENT_ERRORS,
            "Requests the client broke, by model, the version they were routed to and reason; "
            "never counted as the version's errors",
            ["model", "version", "reason"],
            registry=self.registry,
        )
        self.probes = Counter(
            metrics_contract.GATEWAY_PROBES,
            "The controller's own requests (golden-sample check), by model, version and code; "
            "never counted as the version's traffic",
            ["model", "version", "code"],
            registry=self.registry,
        )
        self.retries = Counter(
            metrics_contract.GATEWAY_RETRIES,
            "Requests a canary failed that were retried on stable, by model, the failed and "
            "the retried version, and outcome (answered, failed, over_budget)",
            ["model", "from_version", "to_version", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            metrics_contract.GATEWAY_LATENCY,
            "Time from request to response through the gateway, by model and version",
            ["model", "version"],
            buckets=metrics_contract.LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.weight = Gauge(
            metrics_contract.GATEWAY_WEIGHT,
            "Percent of the model's traffic routed to the version",
            ["model", "version"],
            registry=self.registry,
        )
        self.role = Gauge(
            metrics_contract.GATEWAY_ROLE,
            "1 for each version with its role: stable, or canary for every other version",
            ["model", "version", "role"],
            registry=self.registry,
        )
        # label lookups cost more than the increments; the hot path reuses the children
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}

    def observe(self, model: str, version: str, code: int, seconds: float) -> None:
        """One request the version answered (or failed to answer: 502, 504)."""
        self._counter(model, version, code).inc()
        histogram = self._latency.get((model, version))
        if histogram is None:
            histogram = self._latency[(model, version)] = self.latency.labels(model, version)
        histogram.observe(seconds)

    def client_error(
        self, model: str, version: str, reason: str, answered: int | None = None
    ) -> None:
        """One request the client broke (see modelcanary.gateway.client_errors); with the
        code `answered` when the version answered it. Never timed: the latency judges a
        version on its own requests, which a flood of quick rejections would dilute."""
        self.client_errors.labels(model, version, reason).inc()
        if answered is not None:
            self._counter(model, version, answered).inc()

    def _counter(self, model: str, version: str, code: int) -> Any:
        counter = self._requests.get((model, version, code))
        if counter is None:
            counter = self._requests[(model, version, code)] = self.requests.labels(
                model, version, str(code)
            )
        return counter

    def set_weights(self, model: str, route: ModelRoute, table: WeightTable) -> None:
        for version in route.upstreams:
            self.weight.labels(model, version).set(table.percent(version))
            role = "stable" if version == route.stable else "canary"
            metrics_contract.set_role(self.role, (model, version), role)
