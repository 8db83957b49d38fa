"""Gateway configuration: which versions of which models live where, and the limits.

From a YAML file or from command-line flags; pydantic reports every invalid field by path.

```yaml
models:
  digits:
    stable: "1"
    upstreams: {"1": http://127.0.0.1:8000, "2": http://127.0.0.1:8000}
    # or a list per version: its replicas, balanced round-robin (modelcanary.gateway.replicas)
    # upstreams: {"1": [http://127.0.0.1:8000, http://127.0.0.1:8100]}
    weights: {"1": 90, "2": 10}        # default: all traffic to stable
    grpc_upstreams: {"1": 127.0.0.1:8001, "2": 127.0.0.1:8001}  # for the gateway's gRPC
    # or a list per version, one address per replica in the order of its upstreams' list
    # (the same processes): gRPC is balanced and fails over as HTTP is
    # grpc_upstreams: {"1": [127.0.0.1:8001, 127.0.0.1:8101]}
max_body_bytes: 8388608
upstream_timeout_s: 30
readiness_interval_s: 1                # probe each version's readiness; 0: never
retry:                                 # a request a canary failed, once more on stable
  enabled: true
  ratio: 0.2                           # budget: retries per request over the window
  min_per_s: 10                        # ... plus this many per second
  window_s: 10
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
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from modelcanary.errors import UsageError, describe_validation_errors
from modelcanary.files import read_text
from modelcanary.gateway.retry import RetrySettings
from modelcanary.shadow.settings import ShadowSettings

DEFAULT_MAX_BODY = 8 * 1024 * 1024


def _as_list(addresses: Any) -> Any:
    """One gRPC address stands for a list of one."""
    return [addresses] if isinstance(addresses, str) else addresses


class ModelRoute(BaseModel):
    """The versions of one model behind the gateway."""

    model_config = ConfigDict(extra="forbid")

    stable: str
    upstreams: dict[str, str] = Field(min_length=1)  # each version's (first replica's) URL
    replicas: dict[str, list[str]] = Field(default_factory=dict)  # from upstreams' lists
    weights: dict[str, int] | None = None
    # version: host:port of each replica's KServe v2 gRPC (one address, or one a replica)
    grpc_upstreams: dict[str, Annotated[list[str], BeforeValidator(_as_list)]] = {}

    @field_validator("grpc_upstreams")
    @classmethod
    def _addresses(cls, upstreams: dict[str, list[str]]) -> dict[str, list[str]]:
        for version, addresses in upstreams.items():
            if not addresses:
                raise ValueError(f"gRPC upstream of version {version!r} is an empty list")
            for address in addresses:
                host, sep, port = address.rpartition(":")
                if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError(
                        f"gRPC upstream of version {version!r} must be HOST:PORT: {address!r}"
                    )
        return {str(v): a for v, a in upstreams.items()}

    @model_validator(mode="before")
    @classmethod
    def _replica_lists(cls, data: Any) -> Any:
        """A version's upstream may be a list of its replicas' URLs: the first is its
        `upstreams` entry, all are its `replicas`."""
        if not isinstance(data, dict) or not isinstance(data.get("upstreams"), dict):
            return data
        if "replicas" in data:
            raise ValueError("give a version's replicas as a list of URLs in upstreams")
        upstreams, replicas = {}, {}
        for version, urls in data["upstreams"].items():
            if isinstance(urls, list):
                if not urls:
                    raise ValueError(f"upstream of version {version!r} is an empty list")
                upstreams[version], replicas[str(version)] = urls[0], urls
            else:
                upstreams[version], replicas[str(version)] = urls, [urls]
        return {**data, "upstreams": upstreams, "replicas": replicas}

    @field_validator("upstreams", "replicas")
    @classmethod
    def _urls(cls, upstreams: dict[str, Any]) -> dict[str, Any]:
        for version, urls in upstreams.items():
            for url in urls if isinstance(urls, list) else [urls]:
                if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                    raise ValueError(
                        f"upstream of version {version!r} must be an http(s) URL: {url!r}"
                    )
        return {
            str(v): [u.rstrip("/") for u in urls] if isinstance(urls, list) else urls.rstrip("/")
            for v, urls in upstreams.items()
        }

    @model_validator(mode="after")
    def _stable_is_served(self) -> ModelRoute:
        if self.stable not in self.upstreams:
            raise ValueError(
                f"stable version {self.stable!r} has no upstream "
                f"(upstreams: {', '.join(self.upstreams)})"
            )
        return self

    @model_validator(mode="after")
    def _grpc_replicas(self) -> ModelRoute:
        for version, addresses in self.grpc_upstreams.items():
            count = len(self.replica_urls(version)) if version in self.upstreams else 1
            if len(addresses) not in (1, count):
                raise ValueError(
                    f"gRPC upstream of version {version!r} lists {len(addresses)} addresses "
                    f"for its {count} replicas: give one, or one a replica in the order of "
                    "its upstreams"
                )
        return self

    def replica_urls(self, version: str) -> list[str]:
        """The URLs of the version's replicas (its upstream alone, when not a list)."""
        return self.replicas.get(version) or [self.upstreams[version]]

    def initial_weights(self) -> dict[str, int]:
        return self.weights or {self.stable: 100}


class GatewayConfig(BaseModel):
    """Everything the gateway needs but its admin token."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelRoute] = Field(min_length=1)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, gt=0)
    upstream_timeout_s: float = Field(default=30.0, gt=0)
    readiness_interval_s: float = Field(default=1.0, ge=0)
    retry: RetrySettings = Field(default_factory=RetrySettings)
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
