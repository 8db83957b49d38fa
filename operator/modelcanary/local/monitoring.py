"""The local Prometheus and Alertmanager: their configs (pure) and their processes.

`start` begins with empty data. `restart` (after a crash, by the stack's supervisor) starts
the same binary on the same port with the same config. Alertmanager keeps its data (its
silences, and its notification log, so it does not page again for what it sent).
Prometheus starts fresh: what a rollout decides on lives in the rollout's own state
(baselines of cumulative counters, which the gateway keeps counting while Prometheus is
down), so nothing it needs is lost, and a fresh TSDB cannot answer with the last values
from before the crash as if they were current (a replayed write-ahead log would, until the
first scrape and rule evaluation after the restart: a canary that seems to have received
nothing while stable's counter seems to jump). Until then queries find no series: no data,
and the rollout holds.

Alertmanager's API (and UI) asks for a password (HTTP basic auth, `--web.config.file`):
an alert posted by anyone on the machine would otherwise page on-call and reach the
controller. Prometheus and the controller read the password from `alertmanager.password`
in the run directory (mode 0600); the user is `modelcanary`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from modelcanary.adapters.alertmanager_notifier import AlertmanagerNotifier
from modelcanary.errors import UsageError
from modelcanary.files import token_file
from modelcanary.process import LOOPBACK, ManagedProcess, find_binary, free_ports
from modelcanary.waiting import wait_until


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    address: str  # host:port
    path: str = "/metrics"


ALERTMANAGER_USER = "modelcanary"


def prometheus_config(
    targets: list[ScrapeTarget],
    rule_files: list[Path],
    alertmanager: str,
    interval: str,
    alertmanager_password_file: Path | None = None,
) -> dict[str, Any]:
    """prometheus.yml: every target scraped and every rule evaluated each `interval`;
    targets of one job (Triton's replicas) are one job's targets, told apart by `instance`."""
    sending: dict[str, Any] = {"static_configs": [{"targets": [alertmanager]}]}
    if alertmanager_password_file is not None:
        sending["basic_auth"] = {
            "username": ALERTMANAGER_USER,
            "password_file": str(alertmanager_password_file),
        }
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "alerting": {"alertmanagers": [sending]},
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": path,
                "static_configs": [
                    {"targets": [t.address for t in targets if (t.job, t.path) == (job, path)]}
                ],
            }
            for job, path in dict.fromkeys((t.job, t.path) for t in targets)
        ],
    }


class _Daemon:
    """What Prometheus and Alertmanager share: one process answering `/-/ready`."""

    process: ManagedProcess
    url: str

    @property
    def ready_url(self) -> str:
        return f"{self.url}/-/ready"

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def exited(self) -> str | None:
        """Why it is not running (None while it runs)."""
        return self.process.exited()

    def restart(self) -> None:
        """Start again after a crash: same port, same config, the data kept."""
        self.process.start(self.ready_url)

    def stop(self) -> None:
        self.process.stop()


class Prometheus(_Daemon):
    """The real `prometheus` binary on a loopback port (a free one unless given)."""

    def __init__(self, run_dir: Path, port: int | None = None) -> None:
        self.binary = find_binary(("prometheus",), "prometheus")
        self.run_dir = run_dir
        self.port = port or free_ports(1)[0]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.config_path = run_dir / "prometheus.yml"
        self.process = ManagedProcess(
            "prometheus",
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={run_dir / 'prometheus-data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                "--storage.tsdb.retention.time=1d",
            ],
            run_dir / "prometheus.log",
        )

    def start(self, config: dict[str, Any]) -> None:
        # A fresh TSDB each run: series of an earlier run (gauges live 5 minutes in queries)
        # would otherwise bend this run's alerts and checks.
        shutil.rmtree(self.run_dir / "prometheus-data", ignore_errors=True)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.process.start(self.ready_url)

    def restart(self) -> None:
        """Start again after a crash: same port and config, a fresh TSDB (see above)."""
        shutil.rmtree(self.run_dir / "prometheus-data", ignore_errors=True)
        self.process.start(self.ready_url)

    def wait_for_targets(self, timeout: float = 30.0) -> None:
        """Until every target has been scraped successfully (the first scrape takes a while)."""
        down: list[str] = []

        def all_up() -> bool:
            targets = httpx.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]
            active = targets["activeTargets"]
            down[:] = [
                f"{t['labels']['job']} ({t['lastError'] or t['health']})"
                for t in active
                if t["health"] != "up"
            ]
            return bool(active) and not down

        if not wait_until(all_up, timeout, every=0.2):
            raise UsageError(f"Prometheus targets not up within {timeout:.0f} s: {', '.join(down)}")


class Alertmanager(_Daemon):
    """The real Alertmanager (Debian names it prometheus-alertmanager) on a loopback port
    (a free one unless given)."""

    def __init__(self, run_dir: Path, port: int | None = None) -> None:
        self.binary = find_binary(
            ("alertmanager", "prometheus-alertmanager"), "prometheus-alertmanager"
        )
        self.run_dir = run_dir
        self.port = port or free_ports(1)[0]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.config_path = run_dir / "alertmanager.yml"
        self.password_file = run_dir / "alertmanager.password"
        self.password = token_file(self.password_file, "Alertmanager password file")
        web_config = run_dir / "alertmanager-web.yml"
        web_config.write_text(
            yaml.safe_dump({"basic_auth_users": {ALERTMANAGER_USER: bcrypt_hash(self.password)}})
        )
        self.process = ManagedProcess(
            "alertmanager",
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--web.config.file={web_config}",
                f"--storage.path={run_dir / 'alertmanager-data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                "--cluster.listen-address=",  # no gossip port: a single local instance
            ],
            run_dir / "alertmanager.log",
        )

    @property
    def ready_url(self) -> str:
        return f"http://{ALERTMANAGER_USER}:{self.password}@{LOOPBACK}:{self.port}/-/ready"

    def start(self, config_text: str) -> None:
        shutil.rmtree(self.run_dir / "alertmanager-data", ignore_errors=True)  # no old silences
        self.config_path.write_text(config_text)
        self.process.start(self.ready_url)


def alertmanager_auth(urls: dict[str, str]) -> httpx.BasicAuth:
    """The credentials of the stack's Alertmanager (from the URLs `up` wrote)."""
    password = Path(urls["alertmanager_password_file"]).read_text().strip()
    return httpx.BasicAuth(ALERTMANAGER_USER, password)


def notifier_for(urls: dict[str, str], alertmanager: str | None) -> AlertmanagerNotifier:
    """A notifier for the Alertmanager a spec names, or for the stack's, with its password
    (never sent to another one)."""
    if alertmanager:
        return AlertmanagerNotifier(alertmanager)
    return AlertmanagerNotifier(urls["alertmanager"], auth=alertmanager_auth(urls))


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash of the password, as Alertmanager's web config wants it, from the C
    library's crypt (libxcrypt) with a salt from the operating system."""
    library = ctypes.util.find_library("crypt")
    if library is None:
        raise UsageError("libcrypt is missing: install libcrypt1 (apt-get install libcrypt1)")
    crypt = ctypes.CDLL(library)
    crypt.crypt_gensalt.restype = ctypes.c_char_p
    crypt.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    crypt.crypt.restype = ctypes.c_char_p
    crypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = crypt.crypt_gensalt(b"$2b$", 10, None, 0)
    hashed = crypt.crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2b$"):
        raise UsageError(f"{library} cannot make bcrypt hashes (libxcrypt 4 can)")
    return str(hashed.decode("ascii"))
