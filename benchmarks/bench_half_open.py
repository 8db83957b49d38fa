"""New connections under a flood of half-open ones (issue 25 probe 4).

A server process runs two AppServers as `modelcanary up` does (a "gateway" and the
controller's "webhook", default limits: each may hold 1/8 of the raised file limit),
attacker processes open `--connections` connections that never finish their headers
and hold them (the gateway closes the oldest beyond its limit), and this process sends
`--requests` requests to the gateway and a fifth as many to the webhook, each on a new
connection. Before modelcanary.http_guard, 20,000 such connections exhausted the file
limit and 1,208 of 3,000 requests were reset (`--unguarded` shows it again). Prints a
table and writes benchmarks/results/half_open.json (half_open_unguarded.json). Each
connection takes a local port until it closes: on a shared machine, use fewer.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
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


def serve(unguarded: bool) -> None:
    """Two servers in one process; print their ports, run until stdin closes, print stats."""
    from modelcanary.alerts.webhook import AlertBook, create_app
    from modelcanary.asgi_server import AppServer
    from modelcanary.http_guard import DEFAULT_LIMITS, Limits

    limits = Limits(header_timeout_s=3600, max_connections=10**6) if unguarded else DEFAULT_LIMITS
    servers = [
        AppServer(create_app(AlertBook(), "t"), name=name, limits=limits)
        for name in ("gateway", "webhook")
    ]
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


def attack(port: int, count: int) -> None:
    """Open `count` half-open connections to the port and hold them until stdin closes;
    print how many the server closed meanwhile."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = []
    for _ in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            sock.sendall(PARTIAL)
        except OSError:
            continue  # an unguarded server that ran out of files
        held.append(sock)
    print("ready", flush=True)
    sys.stdin.read()
    closed = 0
    for sock in held:
        sock.setblocking(False)
        try:
            closed += sock.recv(1) == b""
        except BlockingIOError:
            pass  # still open
        except ConnectionResetError:
            closed += 1
    print(json.dumps({"closed_by_server": closed}), flush=True)


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
    parser.add_argument(
        "--unguarded",
        action="store_true",
        help="no header timeout and no connection limit: as before modelcanary.http_guard",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--attack", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.unguarded)
        return 0
    if args.attack:
        attack(*args.attack)
        return 0
    me = [sys.executable, __file__]
    serve_args = ["--serve", "--unguarded"] if args.unguarded else ["--serve"]
    server = subprocess.Popen(
        [*me, *serve_args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None and server.stdin is not None
    gateway, webhook = json.loads(server.stdout.readline())
    counts = [PER_ATTACKER] * (args.connections // PER_ATTACKER)
    counts += [args.connections % PER_ATTACKER] if args.connections % PER_ATTACKER else []
    attackers = [
        subprocess.Popen(
            [*me, "--attack", str(gateway), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in counts
    ]
    for attacker in attackers:
        assert attacker.stdout is not None and attacker.stdout.readline().strip() == "ready"
    results = {
        "gateway": measure(f"http://127.0.0.1:{gateway}", args.requests),
        "webhook": measure(f"http://127.0.0.1:{webhook}", max(1, args.requests // 5)),
    }
    closed = 0
    for attacker in attackers:  # stop the attack first: the server's stats are under it
        out, _ = attacker.communicate(timeout=60)
        closed += json.loads(out.strip().splitlines()[-1])["closed_by_server"]
    server.stdin.close()
    stats = json.loads(server.stdout.readline())
    server.wait(30)
    # a table: each row's cells in the header's order
    # fmt: off
    rows = [
        [name, str(r["requests"]), str(r["failed"]), f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
         str(s["limit"]), str(s["displaced"])]
        for (name, r), s in zip(results.items(), stats, strict=True)
    ]
    # fmt: on
    print(
        f"{args.connections} half-open connections opened to the gateway, "
        f"{closed} of them closed by it to make room"
    )
    header = ["server", "requests", "failed", "p50 ms", "p99 ms", "limit", "displaced"]
    print(format_table([header, *rows]))
    RESULTS.parent.mkdir(exist_ok=True)
    document = {
        "connections": args.connections,
        "unguarded": args.unguarded,
        "closed_by_server": closed,
        "servers": results,
        "guards": stats,
        "machine": platform.platform(),
    }
    results_file = RESULTS.with_stem("half_open_unguarded") if args.unguarded else RESULTS
    results_file.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if any(r["failed"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
