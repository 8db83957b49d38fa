"""Soak: `modelcanary up` under steady load and a hostile client, with rollouts and a monitor
killed every minute.

Run with `make soak` (`--minutes 10` by default; CI does not run it). Starts `modelcanary up`
(real Triton, gateway, Prometheus, Alertmanager) as a user would, offers --rate requests/s
through the gateway (open loop), runs healthy rollouts one after another (1 -> 2 -> 3 -> 2
...; each step changes the weights at the gateway) and every --kill-every seconds kills
Prometheus or Alertmanager (in turn) with SIGKILL. Reports requests sent, lost (no answer,
or skipped at the concurrency limit) and failed (an error status), latency percentiles,
each restart's downtime, the rollouts' outcomes, and each process's resident memory at the
start and the end. Unless --no-hostile, a hostile client (benchmarks/hostile.py) sends
every probe of issue 25 each --hostile-every seconds without the stack's keys: crash
payloads, requests pinned to the canary that would poison its error ratio, Triton
repository loads, forged alerts and pages, half-open connections. Goal: no user request
lost or failed, no Triton crash, no healthy canary rolled back, memory flat. Writes
benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]  # tests.support, and this modelcanary

from tests.support.rollout_spec import rollout_spec  # noqa: E402

from hostile import HostileClient, HostileReport  # noqa: E402
from modelcanary.examples import digits  # noqa: E402
from modelcanary.load.generator import BackgroundLoad, request_bodies  # noqa: E402
from modelcanary.load.report import LoadReport  # noqa: E402
from modelcanary.local.controller import LocalRollout  # noqa: E402
from modelcanary.local.monitoring import alertmanager_auth  # noqa: E402
from modelcanary.tables import format_table  # noqa: E402
from modelcanary.waiting import wait_until  # noqa: E402

MODEL = "digits"
RESULTS = Path(__file__).parent / "results" / "soak.json"
MODELCANARY = [sys.executable, "-m", "modelcanary"]
MONITORS = ("prometheus", "alertmanager")


def rss_mib(pid: int) -> float:
    """Resident memory of one process (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def group_rss_mib(leader: int) -> float:
    """Resident memory of a process group (Triton and its backend stubs)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == leader:
            total += rss_mib(int(stat.parent.name))
    return total


def parts(run_dir: Path) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = json.loads((run_dir / "parts.json").read_text())
    return found


def memory(run_dir: Path, up: subprocess.Popen[bytes]) -> dict[str, float]:
    """MiB per process: up (gateway and receivers), Triton with its stubs, the monitors,
    and this process (the load generator)."""
    pids = {name: int(str(status["pid"] or 0)) for name, status in parts(run_dir).items()}
    found = {"modelcanary up (gateway, receivers)": rss_mib(up.pid)}
    triton = pids.get("triton-0", 0)
    found["triton (with backend stubs)"] = group_rss_mib(triton) if triton else 0.0
    for name in MONITORS:
        pid = pids.get(name, 0)
        found[name] = rss_mib(pid) if pid else 0.0
    found["load generator (this process)"] = rss_mib(os.getpid())
    return {k: round(v, 1) for k, v in found.items()}


@dataclass
class Rollouts:
    """Healthy rollouts one after another until stopped."""

    run_dir: Path
    spec_dir: Path
    stop: threading.Event = field(default_factory=threading.Event)
    outcomes: list[dict[str, object]] = field(default_factory=list)
    weight_changes: int = 0
    controller: subprocess.Popen[bytes] | None = None
    started_at: list[float] = field(default_factory=list)  # wall time of each controller start
    canary: str = "2"  # the version under rollout now

    def run(self) -> None:
        """1 -> 2, then 2 and 3 in turn: version 1 is worse than both on the holdout, so
        the gate (rightly) refuses it as a canary."""
        stable = 1
        while not self.stop.is_set():
            canary = 2 if stable != 2 else 3
            self.canary = str(canary)
            outcome = self.once(stable, canary)
            if self.stop.is_set():
                outcome["phase"] = f"{outcome['phase']} (cut short: the soak ended)"
            self.outcomes.append(outcome)
            print(f"rollout {stable} -> {canary}: {outcome['phase']} in {outcome['seconds']} s")
            if outcome["phase"] == "Promoted":
                stable = canary
            elif outcome["phase"] != "RolledBack":
                return  # stuck: leave it for the report

    def finish(self) -> None:
        """Stop after the rollout under way, which the controller leaves where it is."""
        self.stop.set()
        if self.controller is not None and self.controller.poll() is None:
            self.controller.send_signal(signal.SIGTERM)

    def once(self, stable: int, canary: int) -> dict[str, object]:
        spec = self.spec_dir / f"{stable}-to-{canary}.yaml"
        spec.write_text(yaml.safe_dump(spec_document(stable, canary)))
        started = time.monotonic()
        self.started_at.append(time.time())
        quiet_in_run_dir = ["--run-dir", str(self.run_dir), "--quiet"]
        self.controller = controller = subprocess.Popen(
            [*MODELCANARY, "rollout", "start", "-f", str(spec), *quiet_in_run_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            output, _ = controller.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            controller.kill()
            output, _ = controller.communicate()
        state = LocalRollout.of(self.run_dir, MODEL).store.load()
        phase = state.phase if state is not None else "none"
        moves = [t for t in state.history if t.action in ("start", "advance")] if state else []
        self.weight_changes += len(moves)
        return {
            "stable": stable,
            "canary": canary,
            "phase": phase,
            "seconds": round(time.monotonic() - started, 1),
            "weight_changes": len(moves),
            "last_lines": output.decode(errors="replace").strip().splitlines()[-3:],
        }


def spec_document(stable: int, canary: int) -> dict[str, object]:
    """The tests' rollout, slower and more tolerant: a soak runs for minutes on 2 cores."""
    analysis = {
        "latencyP99": {"maxSeconds": 1.0, "maxRatioToStable": 5, "ratioFloorSeconds": 0.25},
        "noData": {"after": "60s", "action": "pause"},
        "beforeFull": {"errorRatioAboveStable": 0.05, "maxWait": "10s"},
    }
    shadow = {"percent": 10, "minSamples": 100, "maxDuration": "30s"}
    return rollout_spec(
        stable,
        canary,
        analysis,
        model=MODEL,
        steps=[10, 30, 60, 100],
        interval="5s",
        shadow=shadow,
        progressDeadline="4m",
    )


def kill_monitor(run_dir: Path, urls: dict[str, str], name: str) -> dict[str, object]:
    """SIGKILL one monitor; seconds until its new process answers on the same URL."""
    before = parts(run_dir)[name]["pid"]
    killed_at = time.time()
    os.kill(int(str(before)), signal.SIGKILL)
    killed = time.monotonic()

    def back() -> bool:
        status = parts(run_dir)[name]
        if status["state"] != "running" or status["pid"] in (None, before):
            return False
        try:
            auth = alertmanager_auth(urls) if name == "alertmanager" else None
            return httpx.get(f"{urls[name]}/-/ready", auth=auth, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    restarted = wait_until(back, 120, every=0.1)
    seconds = round(time.monotonic() - killed, 2) if restarted else None
    print(f"killed {name} (pid {before}); back after {seconds} s")
    return {"monitor": name, "killed_at": killed_at, "back_after_s": seconds}


def attribute(
    problems: list[tuple[float, str]], kills: list[dict[str, object]], starts: list[float]
) -> dict[str, int]:
    """Each problem request by when it happened: while a monitor was down or coming back
    (from its kill to 5 s after it was back), within 3 s of a controller starting (a new
    Python process on the two shared cores), or elsewhere."""
    windows = []
    for kill in kills:
        killed_at = float(str(kill["killed_at"]))
        windows.append((killed_at, killed_at + float(str(kill["back_after_s"] or 120)) + 5))
    found = {"monitor restart": 0, "controller start": 0, "elsewhere": 0}
    for at, _ in problems:
        if any(start <= at <= end for start, end in windows):
            found["monitor restart"] += 1
        elif any(start <= at <= start + 3 for start in starts):
            found["controller start"] += 1
        else:
            found["elsewhere"] += 1
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("model_repo"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s (200)")
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds (60)")
    parser.add_argument("--hostile-every", type=float, default=5.0, help="seconds (5)")
    parser.add_argument(
        "--no-hostile", dest="hostile", action="store_false", help="no hostile client"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    digits.build(args.repo, say=lambda line: None)
    with tempfile.TemporaryDirectory(prefix="modelcanary-soak-") as run:
        return soak(args, Path(run))


def soak(args: argparse.Namespace, run_dir: Path) -> int:
    paths = ["--repo", str(args.repo), "--run-dir", str(run_dir)]
    command = [*MODELCANARY, "up", "--model", MODEL, "--stable", "1", *paths]
    with (run_dir / "up.out").open("wb") as out:
        up = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        if not wait_until(lambda: (run_dir / "up.json").exists() or up.poll() is not None, 300):
            raise SystemExit("modelcanary up did not start")
        if up.poll() is not None:
            raise SystemExit((run_dir / "up.out").read_text())
        urls = json.loads((run_dir / "up.json").read_text())
        load = BackgroundLoad(urls["gateway"], MODEL, request_bodies(args.repo, MODEL), args.rate)
        load.start()
        time.sleep(10)  # warm: connections open, series scraped
        memory_start = memory(run_dir, up)
        rollouts = Rollouts(run_dir, run_dir)
        rolling = threading.Thread(target=rollouts.run, name="rollouts", daemon=True)
        rolling.start()
        hostile = HostileClient(urls, MODEL, lambda: rollouts.canary, args.hostile_every)
        if args.hostile:
            hostile.start()
        kills: list[dict[str, object]] = []
        started = time.monotonic()
        end = started + args.minutes * 60
        while time.monotonic() + args.kill_every <= end and up.poll() is None:
            time.sleep(args.kill_every)
            kills.append(kill_monitor(run_dir, urls, MONITORS[len(kills) % 2]))
        time.sleep(max(0.0, end - time.monotonic()))
        memory_end = memory(run_dir, up)
        attacks = hostile.stop() if args.hostile else None
        triton_restarts = int(str(parts(run_dir)["triton-0"]["restarts"]))
        rollouts.finish()
        rolling.join(timeout=60)
        report = load.stop()
        problems = list(load.problems)
        up_alive = up.poll() is None
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(120)
    if report is None:
        raise SystemExit("the load generator gave no report")
    return summarize(
        args,
        report,
        problems,
        kills,
        rollouts,
        (memory_start, memory_end),
        up_alive,
        run_dir,
        (attacks, triton_restarts),
    )


def summarize(
    args: argparse.Namespace,
    report: LoadReport,
    problems: list[tuple[float, str]],
    kills: list[dict[str, object]],
    rollouts: Rollouts,
    memory: tuple[dict[str, float], dict[str, float]],
    up_alive: bool,
    run_dir: Path,
    hostility: tuple[HostileReport | None, int],
) -> int:
    memory_start, memory_end = memory
    attacks, triton_restarts = hostility
    when = attribute(problems, kills, rollouts.started_at)
    total = report.total
    no_answer = total.codes.get("no answer", 0)
    lost = no_answer + report.skipped
    failed = total.errors - no_answer
    downtimes = [float(str(k["back_after_s"])) for k in kills if k["back_after_s"] is not None]
    phases = [str(o["phase"]) for o in rollouts.outcomes]
    finished = [p for p in phases if "cut short" not in p]
    killed = ", ".join(str(k["monitor"]) for k in kills)
    back = "-"
    if downtimes:
        back = f"{sorted(downtimes)[len(downtimes) // 2]:.1f} / {max(downtimes):.1f} s"
    promoted, rolled_back = finished.count("Promoted"), finished.count("RolledBack")
    latency = f"{total.p50_ms:.1f} / {total.p99_ms:.1f} / {total.max_ms:.1f} ms"
    rows = [
        ["duration", f"{args.minutes:g} min at {args.rate:g} requests/s"],
        ["requests sent", str(report.sent + report.skipped)],
        ["answered 2xx", str(total.requests - total.errors)],
        ["lost (no answer, or skipped)", f"{lost} ({no_answer} + {report.skipped})"],
        ["failed (error status)", str(failed)],
        ["lost or failed while a monitor restarted", str(when["monitor restart"])],
        ["... within 3 s of a controller start", str(when["controller start"])],
        ["... elsewhere", str(when["elsewhere"])],
        ["latency p50 / p99 / max", latency],
        ["monitors killed", f"{len(kills)} ({killed})"],
        ["back after (median / max)", back],
        [
            "rollouts finished",
            f"{len(finished)}: {promoted} promoted, {rolled_back} rolled back, "
            f"{len(finished) - promoted - rolled_back} other",
        ],
        ["rollouts cut short by the end", str(len(phases) - len(finished))],
        ["weight changes", str(rollouts.weight_changes)],
        ["modelcanary up running at the end", "yes" if up_alive else "NO"],
        [
            "hostile rounds (half-open connections)",
            f"{attacks.rounds} ({attacks.half_open})" if attacks else "off",
        ],
        ["Triton restarts", str(triton_restarts)],
    ]
    print(format_table([["", "soak"], *rows]))
    memory_rows = [["process", "RSS start MiB", "RSS end MiB"]]
    memory_rows += [
        [name, f"{memory_start[name]:.1f}", f"{memory_end[name]:.1f}"] for name in memory_start
    ]
    print(format_table(memory_rows))
    if attacks is not None:
        answers = sorted(attacks.answers.items())
        answer_rows = [[k, str(v)] for k, v in answers]
        print(format_table([["hostile probe and answer", "count"], *answer_rows]))
    met = (
        lost + failed == 0
        and up_alive
        and len(downtimes) == len(kills)
        and triton_restarts == 0
        and rolled_back == 0
    )
    print(
        "goal: no user request lost or failed, no Triton crash, no healthy canary rolled "
        f"back: {'met' if met else 'NOT met'}"
    )
    if lost or failed:
        print(f"{lost + failed} requests lost or failed in all: {when}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    supervisor_log = run_dir / "supervisor.log"
    document = {
        "minutes": args.minutes,
        "rate": args.rate,
        "kill_every_s": args.kill_every,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "sent": report.sent + report.skipped,
        "lost": lost,
        "no_answer": no_answer,
        "skipped": report.skipped,
        "failed": failed,
        "codes": total.codes,
        "p50_ms": total.p50_ms,
        "p99_ms": total.p99_ms,
        "max_ms": total.max_ms,
        "kills": kills,
        "rollouts": rollouts.outcomes,
        "weight_changes": rollouts.weight_changes,
        "up_running_at_end": up_alive,
        "memory_mib_start": memory_start,
        "memory_mib_end": memory_end,
        "first_errors": list(report.first_errors),
        "problems_by_moment": when,
        "problems": [[round(at, 3), what] for at, what in problems],
        "controller_starts": [round(at, 3) for at in rollouts.started_at],
        "supervisor_log": supervisor_log.read_text().splitlines()
        if supervisor_log.exists()
        else [],
        "hostile": attacks.to_json() if attacks else None,
        "triton_restarts": triton_restarts,
        "goal_met": met,
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
