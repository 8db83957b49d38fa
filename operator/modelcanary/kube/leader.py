"""Leader election on a coordination.k8s.io Lease: with several replicas, one acts.

The holder renews the Lease every tick; a replica takes it over only once the holder has
not renewed it for `lease_s`. Every write carries the resourceVersion it read, so two
replicas racing for an expired Lease cannot both win (the loser gets 409). This is the
same protocol as client-go's leader election, which kopf's peering is not: kopf pauses
every replica when two have the same priority.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelcanary.adapters.kube_client import describe
from modelcanary.kube.health import lease_problem

log = logging.getLogger("modelcanary.operator")


def _now() -> datetime:
    return datetime.now(UTC)


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class LeaseElector:
    """Holds or waits for one Lease; `acquire_or_renew` is called once per tick."""

    def __init__(
        self,
        api: client.CoordinationV1Api,
        namespace: str,
        name: str,
        identity: str,
        lease_s: int = 15,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.identity, self.lease_s, self.clock = identity, lease_s, clock
        self.leading = False
        self.renewed_at: float | None = None  # by `clock`, when the last held renewal began

    def acquire_or_renew(self) -> bool:
        """True while this replica holds the Lease (API errors count as not holding)."""
        began = self.clock()
        try:
            leading = self._attempt()
        except ApiException as exc:
            if exc.status != 409:  # 409: another replica won the race, not an error
                log.warning("%s", describe(exc, f"lease {self.namespace}/{self.name}"))
            leading = False
        except Exception as exc:  # an unreachable API server raises urllib3's errors, which
            # must not end the tick loop: once the server is back, the replicas go on
            log.warning("%s", describe(exc, f"lease {self.namespace}/{self.name}"))
            leading = False
        if leading != self.leading:
            log.warning(
                "%s %s the lease %s", self.identity, "acquired" if leading else "lost", self.name
            )
        self.leading = leading
        self.renewed_at = began if leading else None
        return leading

    def not_ready(self) -> str | None:
        """Why this replica does not act now (readiness); None while it holds the Lease."""
        return lease_problem(
            self.identity, self.name, self.leading, self.renewed_at, self.lease_s, self.clock()
        )

    def release(self) -> None:
        """Give the Lease up at shutdown so a standby takes over at once."""
        if not self.leading:
            return
        try:
            lease: Any = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = ""
                lease.spec.renew_time = None
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException:
            pass
        self.leading, self.renewed_at = False, None

    def _attempt(self) -> bool:
        now = _now()
        try:
            lease: Any = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.api.create_namespaced_lease(self.namespace, self._lease(now, transitions=0))
            return True
        spec = lease.spec
        holder = spec.holder_identity or ""
        renewed = spec.renew_time
        if isinstance(renewed, str):
            renewed = _parse(renewed)
        duration = timedelta(seconds=spec.lease_duration_seconds or self.lease_s)
        expired = renewed is None or now - renewed > duration
        if holder != self.identity and holder and not expired:
            return False
        body = self._lease(
            now, transitions=(spec.lease_transitions or 0) + (holder != self.identity)
        )
        body.metadata.resource_version = lease.metadata.resource_version
        if holder == self.identity and spec.acquire_time is not None:
            body.spec.acquire_time = spec.acquire_time
        self.api.replace_namespaced_lease(self.name, self.namespace, body)
        return True

    def _lease(self, now: datetime, transitions: int) -> Any:
        return client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=self.lease_s,
                acquire_time=now,
                renew_time=now,
                lease_transitions=transitions,
            ),
        )
