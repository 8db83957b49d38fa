"""Gateways in front of the real Triton for the stack tests: a config's route of digits,
an inference body, the gateway's metrics (the `start_gateway` fixture is in
tests/stack/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from modelcanary.gateway.app import Gateway
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.server import GatewayServer
from tests.conftest import metric_samples, metric_value

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HEADER = "x-modelcanary-version"
CLIENT_ERRORS = "modelcanary_gateway_client_errors_total"
X = np.random.default_rng(0).random((3, 64)).astype(np.float32)

StartGateway = Callable[..., str]


@contextmanager
def gateways() -> Iterator[StartGateway]:
    """Start gateways on free ports from config dicts; every one stopped after the block."""
    servers: list[GatewayServer] = []

    def start(models: dict[str, object], **limits: object) -> str:
        config = parse_config({"models": models, **limits}, "test")
        server = GatewayServer(Gateway(config, TOKEN))
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def digits_route(
    upstream: str, weights: dict[str, int] | None = None, **extra: object
) -> dict[str, object]:
    route: dict[str, object] = {"stable": "1", "upstreams": {"1": upstream, "2": upstream}, **extra}
    if weights is not None:
        route["weights"] = weights
    return {"digits": route}


def body(x: np.ndarray) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "pixels",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }


def samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    return metric_samples(f"{url}/metrics")


def value(url: str, name: str, **labels: str) -> float:
    return metric_value(f"{url}/metrics", name, **labels)


def server_errors(url: str, version: str) -> float:
    """What the gateway source's error ratio reads: the version's 5xx answers."""
    return sum(
        v
        for n, lab, v in samples(url)
        if n == "modelcanary_gateway_requests_total"
        and lab["version"] == version
        and lab["code"].startswith("5")
    )
