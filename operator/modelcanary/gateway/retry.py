"""Retry on stable: a request a canary failed is sent once more to stable, within a budget.

An inference request is idempotent, so a proxy may send it again (Envoy and Linkerd do,
with retry budgets). While the controller decides whether a canary is bad, every request
the canary fails would otherwise reach a user. The gateway retries, once, on stable, a
request the canary answered with a server error that is not the client's (see
modelcanary.gateway.client_errors), refused, or left unanswered within the timeout; never a
retry, a request pinned to a version by the client, or a probe. The canary's failure is
still counted as its error, so the judge and the alerts see it.

The budget keeps retries from doubling the load on stable when a canary fails everything
at a high weight: over a sliding window of `window_s` seconds, retries may be at most
`ratio` of the requests plus `min_per_s` per second (a floor, as Linkerd's
minRetriesPerSecond, so a model with little traffic is covered too). Pure: the clock is
passed in.
"""

from __future__ import annotations

import threading
from collections import deque

from pydantic import BaseModel, ConfigDict, Field

# The `outcome` label of modelcanary_gateway_retries_total.
ANSWERED = "answered"  # stable answered the retry (its answer reached the user)
FAILED = "failed"  # stable failed too; the user got its error
OVER_BUDGET = "over_budget"  # not retried: the budget was spent; the user got the failure


class RetrySettings(BaseModel):
    """The retry on stable and its budget (`retry:` in the gateway's config)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    ratio: float = Field(default=0.2, ge=0, le=1)
    min_per_s: float = Field(default=10.0, ge=0)
    window_s: float = Field(default=10.0, gt=0, le=3600)


class RetryBudget:
    """Counts requests and retries in time slots (a tenth of the window each) and allows a
    retry while the window's retries stay within the budget."""

    SLOTS = 10

    def __init__(self, settings: RetrySettings) -> None:
        self.settings = settings
        self.slot_s = settings.window_s / self.SLOTS
        self.floor = settings.min_per_s * settings.window_s
        self.slots: deque[list[int]] = deque()  # [slot number, requests, retries]
        self.requests = self.retries = 0
        self.lock = threading.Lock()  # the HTTP and the gRPC server share the budget

    def request(self, now: float) -> None:
        """One request that may be retried."""
        with self.lock:
            self._current(now)[1] += 1
            self.requests += 1

    def allow(self, now: float) -> bool:
        """Whether one more retry is within the budget; if so it is counted as spent."""
        with self.lock:
            slot = self._current(now)
            if self.retries + 1 > self.settings.ratio * self.requests + self.floor:
                return False
            slot[2] += 1
            self.retries += 1
            return True

    def _current(self, now: float) -> list[int]:
        number = int(now / self.slot_s)
        while self.slots and self.slots[0][0] <= number - self.SLOTS:
            _, requests, retries = self.slots.popleft()
            self.requests -= requests
            self.retries -= retries
        if not self.slots or self.slots[-1][0] != number:
            self.slots.append([number, 0, 0])
        return self.slots[-1]
