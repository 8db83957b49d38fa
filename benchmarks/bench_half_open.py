"""New connections under a flood of half-open ones (issue 25 probe 4).

A server process runs two AppServers as `modelcanary up` does (a "gateway" and the
controller's "webhook", default limits: each may hold 1/8 of the raised file limit),
attacker processes keep `--connections` connections open that never finish their
headers (re-opening each one the server closes), and meanwhile this process sends
`--requests` requests to the gateway and a fifth as many to the webhook, each on a new
connection. Before modelcanary.http_guard, 20,000 such connections exhausted the file
limit and 1,208 of 3,000 requests were reset. Prints a table and writes
benchmarks/results/half_open.json. Each connection takes a local port until it closes:
on a shared machine, run it with fewer connections.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from modelcanary.tables import format_table

RESULTS = Path(__file__).parent / "results" / "half_open.json"
PER_ATTACKER = 8000  # connections per attacker process (each has its own file limit)
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


def serve() -> None:
    """Two servers in one process; print their ports, run until stdin closes, print stats."""
    from modelcanary.alerts.webhook import AlertBook, create_app
    from modelcanary.asgi_server import AppServer

    servers = [AppServer(create_app(AlertBook(), "t"), name=n) for n in ("gateway", "webhook")]
    for server in servers:
        server.start()
    print(json.dumps([s.port for s in servers]), flush=True)
    sys.stdin.read()
    stats = [
        {"limit": s.guard.limit, "open": len(s.guard.open), "displaced": s.guard.displaced}
        for s in servers
    ]
    print(json.dumps(stats), flush=True)
    for server in servers:
        server.stop()


def attack(port: int, count: int, seconds: float) -> None:
    """Keep `count` half-open connections to the port for `seconds`."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    selector = selectors.DefaultSelector()
    opened = 0

    def connect() -> None:
        nonlocal opened
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(PARTIAL)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        opened += 1

    for _ in range(count):
        connect()
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            selector.unregister(sock)
            sock.close()  # the server closed it (or answered 408): open another
            connect()
    print(json.dumps({"opened": opened}), flush=True)


def measure(url: str, requests: int) -> dict[str, float]:
    latencies, failed = [], 0
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=5) as client:
        for _ in range(requests):
            started = time.perf_counter()
            try:
                ok = client.get(f"{url}/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            failed += not ok
    ordered = sorted(latencies)
    return {
        "requests": requests,
        "failed": failed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--attack", nargs=3, type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    if args.attack:
        attack(int(args.attack[0]), int(args.attack[1]), args.attack[2])
        return 0
    me = [sys.executable, __file__]
    server = subprocess.Popen([*me, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    assert server.stdout is not None and server.stdin is not None
    gateway, webhook = json.loads(server.stdout.readline())
    counts = [PER_ATTACKER] * (args.connections // PER_ATTACKER)
    counts += [args.connections % PER_ATTACKER] if args.connections % PER_ATTACKER else []
    seconds = 30 + args.requests * 0.05
    attackers = [
        subprocess.Popen(
            [*me, "--attack", str(gateway), str(n), str(seconds)], stdout=subprocess.PIPE, text=True
        )
        for n in counts
    ]
    for attacker in attackers:
        assert attacker.stdout is not None and attacker.stdout.readline().strip() == "ready"
    results = {
        "gateway": measure(f"http://127.0.0.1:{gateway}", args.requests),
        "webhook": measure(f"http://127.0.0.1:{webhook}", max(1, args.requests // 5)),
    }
    server.stdin.close()
    stats = json.loads(server.stdout.readline())
    server.wait(30)
    opened = 0
    for attacker in attackers:
        out, _ = attacker.communicate(timeout=seconds + 30)
        opened += json.loads(out.strip().splitlines()[-1])["opened"]
    rows = [
        [name, str(r["requests"]), str(r["failed"]), f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
         str(s["limit"]), str(s["displaced"])]
        for (name, r), s in zip(results.items(), stats, strict=True)
    ]  # fmt: skip
    print(f"{args.connections} half-open connections held to the gateway "
          f"({opened} opened in all, each closed one re-opened)")  # fmt: skip
    header = ["server", "requests", "failed", "p50 ms", "p99 ms", "limit", "displaced"]
    print(format_table([header, *rows]))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "connections": args.connections, "opened": opened, "servers": results, "guards": stats,
        "machine": platform.platform(),
    }, indent=2) + "\n")  # fmt: skip
    return 1 if any(r["failed"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
