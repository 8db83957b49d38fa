"""The comparator's settings: the gateway's `shadow:` section, the cluster service's too."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ShadowSettings(BaseModel):
    """The comparator's limits, and the repository whose manifests it reads."""

    model_config = ConfigDict(extra="forbid")

    repository: Path | None = None
    queue: int = Field(default=256, gt=0)
    workers: int = Field(default=2, gt=0, le=64)
    timeout_s: float = Field(default=5.0, gt=0)
    drift_window: int = Field(default=1000, gt=0)
    drift_every: int = Field(default=200, gt=0)
