"""The do-nothing notifier, for a controller configured without Alertmanager."""

from __future__ import annotations

from modelcanary.rollout.ports import RolloutEvent


class QuietNotifier:
    """Tells no one; the rollout's history still records every decision."""

    def notify(self, event: RolloutEvent) -> None:
        """Drop the event."""
