"""What one operator costs per tick with 1, 200, 1,000 and 2,000 rollouts in one namespace.

Run with `python benchmarks/bench_operator_scale.py` (about fifteen minutes; `--sizes` to
choose). Starts a real
kube-apiserver and etcd (tests/support/apiserver.py; KUBEBUILDER_ASSETS or .venv/envtest),
a real Prometheus scraping an exporter that makes every canary healthy (demo rules, 1 s
scrape), and for each size a fresh namespace with that many ModelCanaries, each with its
own InferenceService marked Ready, and one `modelcanary operator` process (tick 1 s,
leader election on, as the chart runs it) as the cluster admin.

Every rollout has steps [20, 100] and an interval long enough for several ticks, so the
ticks fall in two kinds: those where every rollout holds (the window between the last
start and the first advance), and those where weights change (until every rollout has
advanced). Per tick it measures the operator's CPU seconds (/proc), Prometheus queries
(Prometheus' own prometheus_http_requests_total{handler="/api/v1/query"}), API requests
by verb and resource (the kube-apiserver's apiserver_request_total before and after; the
operator reads the rollouts from a watch, so ticks are counted by its own
modelcanary_operator_ticks_total), and the operator's resident memory at the end. The
harness itself only watches while it measures. A watch on the InferenceServices times
each weight decision (the transition's timestamp in status.state.history) until its
canaryTrafficPercent changed. Prints the tables and writes
benchmarks/results/operator_scale.json (or `--out`; the tables and JSON: scale_report.py).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config, watch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]  # tests.support, and this modelcanary

from tests.support.apiserver import ApiServer, assets_dir, request_counts  # noqa: E402
from tests.support.kube_crds import CHART_CRDS, UPSTREAM_CRDS, install_crds  # noqa: E402
from tests.support.operator_process import OperatorProcess  # noqa: E402
from tests.support.rollouts import create_canary, create_ready_service, model_canary  # noqa: E402
from tests.support.traffic import SOURCE, WINDOW, Traffic, traffic_prometheus  # noqa: E402

from modelcanary.adapters.kserve_router import KSERVE  # noqa: E402
from modelcanary.kube.crd import GROUP, PLURAL, VERSION  # noqa: E402
from scale_report import SizeResult, Snapshot, Window, results_json, summary_ms, tables  # noqa: E402

SIZES = (1, 200, 1000, 2000)
STEPS = [20, 100]
RESULTS = Path(__file__).parent / "results" / "operator_scale.json"
RESOURCES = ("modelcanaries", "inferenceservices", "leases", "events")
QUERIES = re.compile(
    r'^prometheus_http_requests_total\{[^}]*handler="/api/v1/query"[^}]*\} (\S+)$', re.M
)


def interval_s(rollouts: int) -> int:
    """Long enough for several hold ticks after the last rollout has started."""
    return max(25, rollouts // 4)


class Cluster:
    """The API server, Prometheus and the readers of their counters."""

    def __init__(self, server: ApiServer, prometheus_url: str) -> None:
        self.server, self.prometheus_url = server, prometheus_url
        admin = config.new_client_from_config(config_file=str(server.kubeconfig))
        self.api = client.CustomObjectsApi(admin)
        self.slowest_snapshot_s = 0.0
        self.http = httpx.Client(
            verify=str(server.ca_file),
            timeout=30,
            headers={"Authorization": f"Bearer {server.admin_token}"},
        )

    def requests(self) -> Counter[str]:
        """apiserver_request_total by 'VERB resource[/subresource]', for our resources."""
        counts = request_counts(self.http.get(f"{self.server.url}/metrics").text)
        return Counter({k: v for k, v in counts.items() if k.split()[1].split("/")[0] in RESOURCES})

    def queries(self) -> float:
        text = httpx.get(f"{self.prometheus_url}/metrics", timeout=10).text
        return sum(float(value) for value in QUERIES.findall(text))

    def snapshot(self, operator: OperatorProcess) -> Snapshot:
        """Taken between two ticks; it must be done before the next one begins."""
        at = time.time()
        ticks = ticks_so_far(operator)
        found = Snapshot(at, ticks, self.requests(), self.queries(), operator.usage())
        self.slowest_snapshot_s = max(self.slowest_snapshot_s, time.time() - at)
        return found


class Watcher:
    """The latest body of each object of one resource in a namespace, from a watch (so
    the harness sends no LIST or GET while it measures), and each change of a value."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        resource: tuple[str, str, str],
        value: Callable[[dict[str, Any]], object] = lambda body: None,
    ) -> None:
        self.api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
        self.namespace, self.resource, self.value = namespace, resource, value
        self.latest: dict[str, dict[str, Any]] = {}
        self.changes: dict[str, list[tuple[float, object]]] = {}
        self.watch = watch.Watch()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                # resourceVersion 0: from the watch cache at once. Without it, a v1.36 server
                # waits for its cache to reach etcd's revision, which with this etcd can end
                # in "504 Too large resource version".
                for event in self.watch.stream(
                    self.api.list_namespaced_custom_object,
                    *self.resource[:2],
                    self.namespace,
                    self.resource[2],
                    resource_version="0",
                    deserialize=False,
                ):
                    self._seen(time.time(), event["object"])
            except Exception:  # a dropped watch is started again
                time.sleep(0.1)

    def _seen(self, at: float, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        self.latest[name] = body
        value = self.value(body)
        changes = self.changes.setdefault(name, [])
        if not changes or changes[-1][1] != value:
            changes.append((at, value))

    def statuses(self) -> list[dict[str, Any]]:
        return [body.get("status") or {} for body in list(self.latest.values())]

    def stop(self) -> None:
        self.stopped.set()
        self.watch.stop()


def canary_percent(body: dict[str, Any]) -> object:
    return body["spec"]["predictor"].get("canaryTrafficPercent", "absent")


def wait_for(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    operator: OperatorProcess,
    canaries: Watcher | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            found = Counter(
                f"{s.get('phase')} step {s.get('step')}: {s.get('message')}"
                for s in (canaries.statuses() if canaries else [])
            )
            raise RuntimeError(
                f"timed out: {what}; rollouts: {dict(found.most_common(5))}; the operator's "
                f"log ends:\n{operator.tail()}"
            )
        time.sleep(0.1)


def all_at(canaries: Watcher, rollouts: int, phase: str, step: int) -> bool:
    """Every rollout in PHASE at STEP (0-based), with its weight applied."""
    found = canaries.statuses()
    return len(found) == rollouts and all(
        s.get("phase") == phase and s["state"]["step"] == step and s["state"]["applied"]
        for s in found
    )


def ticks_so_far(operator: OperatorProcess) -> float:
    """The operator's modelcanary_operator_ticks_total (counted as each tick begins)."""
    text = httpx.get(operator.metrics_url, timeout=10).text
    found = re.search(r"^modelcanary_operator_ticks_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def tick_end(cluster: Cluster, operator: OperatorProcess) -> None:
    """Return once the operator has begun a new tick; window edges fall at tick starts,
    within a tick's work."""
    before = ticks_so_far(operator)
    wait_for(lambda: ticks_so_far(operator) > before, 60, "a tick", operator)


def measure(
    cluster: Cluster, operator: OperatorProcess, canaries: Watcher, interval: int
) -> tuple[Window, Window, list[float]]:
    """The hold ticks (from the first tick after the last start to two ticks before the
    first rollout's interval is up), then the changing ones (on until every rollout has
    advanced). Each window begins and ends between two ticks."""
    started = [s["state"]["step_started_at"] for s in canaries.statuses()]
    tick_end(cluster, operator)
    first = time.time()
    tick_end(cluster, operator)
    start = cluster.snapshot(operator)
    period = start.at - first
    time.sleep(max(0.0, min(started) + interval - 2.5 * period - time.time()))
    tick_end(cluster, operator)
    middle = cluster.snapshot(operator)
    load = [round(os.getloadavg()[0], 2)]
    if not all_at(canaries, len(started), "Progressing", 0):
        raise RuntimeError("a rollout advanced within the hold window")
    advanced = partial(all_at, canaries, len(started), "Progressing", 1)
    wait_for(advanced, interval + 60, "every rollout advanced", operator, canaries)
    tick_end(cluster, operator)
    end = cluster.snapshot(operator)
    load.append(round(os.getloadavg()[0], 2))
    return Window.between(start, middle), Window.between(middle, end), load


def decision_delays(
    statuses: list[tuple[str, dict[str, Any]]], seen: dict[str, list[tuple[float, object]]]
) -> list[float]:
    """Seconds from each weight decision to the change of its InferenceService."""
    delays = []
    for name, status in statuses:
        changes = seen.get(name, [])
        previous: object = "absent"
        for transition in status["state"]["history"]:
            target: object = "absent" if transition["action"] == "promote" else transition["weight"]
            if target != previous:
                hit = next(
                    (at for at, value in changes if value == target and at >= transition["at"] - 1),
                    None,
                )
                if hit is not None:
                    delays.append(hit - transition["at"])
            previous = target
    return delays


def run_size(
    cluster: Cluster, traffic: Traffic, rollouts: int, run: Path, say: Callable[[str], None]
) -> SizeResult:
    """One operator over ROLLOUTS new rollouts in a fresh namespace, until all advanced."""
    namespace, interval = f"scale-{rollouts}", interval_s(rollouts)
    cluster.server.kubectl("create", "namespace", namespace)
    traffic.clear()  # only this size's series, so every size queries alike
    for index in range(rollouts):
        model = f"m{rollouts}-{index}"
        traffic.serve(model)
        create_ready_service(cluster.api, namespace, model)
        spec = model_canary(model, model, steps=STEPS, interval=f"{interval}s")
        create_canary(cluster.api, namespace, spec)
    isvcs = Watcher(cluster.server.kubeconfig, namespace, KSERVE, canary_percent)
    canaries = Watcher(cluster.server.kubeconfig, namespace, (GROUP, VERSION, PLURAL))
    operator = OperatorProcess(
        cluster.server.kubeconfig,
        namespace,
        cluster.prometheus_url,
        run / f"operator-{rollouts}.log",
        f"--source={SOURCE}",
        f"--window={WINDOW}",
        "--tick=1s",
        "--leader-election=modelcanary-operator",
        "--identity=bench",
    )
    try:
        operator.start()
        say(f"{rollouts} rollouts: operator up, waiting for every rollout to start")
        started = partial(all_at, canaries, rollouts, "Progressing", 0)
        wait_for(started, 60 + rollouts / 4, "every rollout started", operator, canaries)
        start_ticks = int(ticks_so_far(operator))
        say(f"{rollouts} rollouts: all started; measuring until every rollout has advanced")
        hold, changing, load = measure(cluster, operator, canaries, interval)
        rss_mb = round(operator.usage().rss_bytes / 2**20, 1)
    finally:
        operator.stop()
        isvcs.stop()
        canaries.stop()
    traffic.clear()
    listed: Any = cluster.api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    named = [(item["metadata"]["name"], item["status"]) for item in listed["items"]]
    delays = decision_delays(named, isvcs.changes)
    log = operator.log.read_text(errors="replace").splitlines()
    return SizeResult(
        rollouts=rollouts,
        interval_s=interval,
        start_ticks=start_ticks,
        hold=hold,
        changing=changing,
        rss_mb=rss_mb,
        decision_to_isvc_ms=summary_ms(delays),
        transitions_timed=len(delays),
        conflicts=sum(": 409 " in line for line in log),  # a refused write: "...: 409 Conflict"
        load=load,
        log=sorted({re.sub(r"m\d+-\d+", "<model>", line)[:200] for line in log})[:10],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help=f"where to write the JSON (default {RESULTS})"
    )
    args = parser.parse_args()
    assets = assets_dir()
    if assets is None:
        print("kube-apiserver and etcd not found: set KUBEBUILDER_ASSETS", file=sys.stderr)
        return 2
    started = time.monotonic()
    results: list[SizeResult] = []
    failed: list[dict[str, Any]] = []  # a size that did not get every rollout through
    with (
        tempfile.TemporaryDirectory(prefix="modelcanary-scale-") as tmp,
        ApiServer(assets) as server,
        traffic_prometheus(Path(tmp)) as (prometheus, traffic),
    ):
        install_crds(server, CHART_CRDS)
        install_crds(server, UPSTREAM_CRDS)
        cluster = Cluster(server, prometheus.url)
        for size in args.sizes:
            try:
                results.append(run_size(cluster, traffic, size, Path(tmp), print))
            except RuntimeError as exc:  # recorded; a larger size would fail the same way
                print(f"{size} rollouts failed: {exc}")
                load = round(os.getloadavg()[0], 2)
                failed.append(
                    {
                        "rollouts": size,
                        "load_average_1m": load,
                        "failure": str(exc).split("; the operator's log")[0],
                    }
                )
                break
    print(tables(results))
    print(
        f"slowest snapshot of the counters: {cluster.slowest_snapshot_s:.2f} s (must fit "
        "between two ticks: 1 s)"
    )
    for r in results:
        print(
            f"{r.rollouts} rollouts: every rollout started after {r.start_ticks} tick(s); "
            f"{r.conflicts} status writes refused with 409; machine load {r.load}"
        )
        for line in r.log:
            print(f"  operator log: {line}")
    setup = (
        f"kube-apiserver {server_version(assets)} + etcd, Prometheus (1 s scrape, demo rules), "
        f"one operator process (tick 1 s, leader election), steps {STEPS}, interval "
        "max(25 s, rollouts/4 s); every canary healthy"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(results_json(results, failed, setup, time.monotonic() - started))
    print(f"wrote {args.out} in {time.monotonic() - started:.0f} s")
    return 0


def server_version(assets: Path) -> str:
    import subprocess

    found = subprocess.run(
        [str(assets / "kube-apiserver"), "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    return found[-1] if found else "?"


if __name__ == "__main__":
    sys.exit(main())
