"""What the HTTP layer costs on the gateway's inference path: raw ASGI or Starlette.

    python benchmarks/bench_http_layer.py [--rounds 7] [--calls 20000]

The gateway (modelcanary.gateway.app) is a plain ASGI callable while the project's other
servers are Starlette apps (docs/architecture.md, "One HTTP style"). This measures why,
in one process and without the network, where a loaded machine's noise does not reach
(`bench_gateway.py`'s throughput moves by tens of percent from run to run on 2 shared
cores): the CPU per request of an inference request the gateway answers itself (a body
that is not JSON, refused 400 and counted as a client error; no upstream), through

- raw: the gateway as shipped;
- router: a Starlette app routing the inference path to the gateway's own raw handler;
- endpoint: a Starlette endpoint (Request, `await request.body()`, JSONResponse) doing
  the same checks and counting.

Each case runs `rounds` rounds of `calls` calls, alternating, timed with the process's
CPU clock; the median round's mean is the cost of one request. Prints a table and writes
benchmarks/results/http_layer.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))  # this modelcanary

from modelcanary import metrics_contract  # noqa: E402
from modelcanary.gateway.app import Gateway  # noqa: E402
from modelcanary.gateway.config import parse_config  # noqa: E402
from modelcanary.gateway.infer_checks import check_infer_request  # noqa: E402
from modelcanary.tables import format_table  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "http_layer.json"
PATH = "/v2/models/digits/infer"
BODY = b'{"inputs": [not json'
HEADERS = [
    (b"host", b"127.0.0.1"),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]


def router(gateway: Gateway) -> Starlette:
    """The gateway's raw handler (an ASGI object, not a function) behind Starlette's routes."""
    return Starlette(routes=[Route(PATH, gateway, methods=["POST"]), Mount("/", app=gateway)])


def endpoint(gateway: Gateway) -> Starlette:
    async def infer(request: Request) -> Response:
        model = request.path_params["model"]
        route = gateway.routes[model]
        version = route.serving.choose(gateway.draw())
        body = await request.body()
        rejection = check_infer_request(body, request.headers, gateway.limits[model])
        assert rejection is not None, "the benchmark's body must be refused"
        gateway.metrics.client_error(model, version, rejection.reason)
        return JSONResponse(
            {"error": rejection.message},
            rejection.status,
            headers={metrics_contract.VERSION_HEADER: version},
        )

    return Starlette(routes=[Route("/v2/models/{model}/infer", infer, methods=["POST"])])


async def request(app: Any) -> int:
    """One POST through `app`; the status it answered."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": HEADERS,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    statuses = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


async def measure(rounds: int, calls: int) -> dict[str, list[float]]:
    config = {"models": {"digits": {"stable": "1", "upstreams": {"1": "http://127.0.0.1:9"}}}}
    gateway = Gateway(parse_config(config, "bench"), "token")
    apps = {"raw": gateway, "router": router(gateway), "endpoint": endpoint(gateway)}
    for name, app in apps.items():
        assert await request(app) == 400, f"{name} did not refuse the body"
    spent: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            started = time.process_time()
            for _ in range(calls):
                await request(app)
            spent[name].append((time.process_time() - started) / calls * 1e6)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    spent = asyncio.run(measure(args.rounds, args.calls))
    raw = statistics.median(spent["raw"])
    rows = {
        name: {
            "median_us": statistics.median(xs),
            "min_us": min(xs),
            "max_us": max(xs),
            "added_us": statistics.median(xs) - raw,
        }
        for name, xs in spent.items()
    }
    table = [("HTTP layer", "CPU per request (µs)", "min", "max", "added to raw (µs)")]
    for name, row in rows.items():
        table.append(
            (
                name,
                f"{row['median_us']:.1f}",
                f"{row['min_us']:.1f}",
                f"{row['max_us']:.1f}",
                f"{row['added_us']:+.1f}",
            )
        )
    print(f"median of {args.rounds} rounds of {args.calls} requests each")
    print(format_table(table))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "http_layer",
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "rounds": args.rounds,
        "calls": args.calls,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results written to {RESULTS}")


if __name__ == "__main__":
    main()
