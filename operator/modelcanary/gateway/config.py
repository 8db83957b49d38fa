"""Gateway configuration: which versions of which models live where, and the limits.

From a YAML file or from command-line flags; pydantic reports every invalid field by path.

```yaml
models:
  digits:
    stable: "1"
    upstreams: {"1": http://127.0.0.1:8000, "2": http://127.0.0.1:8000}
    weights: {"1": 90, "2": 10}        # default: all traffic to stable
    retry_on_refused: true             # a refused canary request is retried on stable
max_body_bytes: 8388608
upstream_timeout_s: 30
readiness_interval_s: 1                # probe each version's readiness; 0: never
shadow:                                # the comparator (modelcanary.shadow), all optional
  repository: model_repo               # manifests: output kinds, tolerances, input profiles
  queue: 256                           # mirrored requests waiting; more are dropped
  workers: 2                           # canary requests in flight
  timeout_s: 5
  drift_window: 1000                   # live samples scored for input drift
  drift_every: 200                     # new samples between two scores
```
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelcanary.errors import UsageError, describe_validation_errors
from modelcanary.files import read_text
from modelcanary.shadow.settings import ShadowSettings

DEFAULT_MAX_BODY = 8 * 1024 * 1024


class ModelRoute(BaseModel):
    """The versions of one model behind the gateway."""

    model_config = ConfigDict(extra="forbid")

    stable: str
    upstreams: dict[str, str] = Field(min_length=1)
    weights: dict[str, int] | None = None
    retry_on_refused: bool = False

    @field_validator("upstreams")
    @classmethod
    def _urls(cls, upstreams: dict[str, str]) -> dict[str, str]:
        for version, url in upstreams.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"upstream of version {version!r} must be an http(s) URL: {url!r}")
        return {str(v): url.rstrip("/") for v, url in upstreams.items()}

    @model_validator(mode="after")
    def _stable_is_served(self) -> ModelRoute:
        if self.stable not in self.upstreams:
            raise ValueError(
                f"stable version {self.stable!r} has no upstream "
                f"(upstreams: {', '.join(self.upstreams)})"
            )
        return self

    def initial_weights(self) -> dict[str, int]:
        return self.weights or {self.stable: 100}


class GatewayConfig(BaseModel):
    """Everything the gateway needs but its admin token."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelRoute] = Field(min_length=1)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, gt=0)
    upstream_timeout_s: float = Field(default=30.0, gt=0)
    readiness_interval_s: float = Field(default=1.0, ge=0)
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)


def load_config(path: Path) -> GatewayConfig:
    """Read a YAML config, naming the file and each invalid field on error."""
    text = read_text(path, f"--config {path}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"--config {path}: not valid YAML: {exc}") from None
    return parse_config(data, str(path))


def parse_config(data: object, source: str) -> GatewayConfig:
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{source}: {describe_validation_errors(exc)}") from None
