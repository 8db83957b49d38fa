"""A real kube-apiserver with etcd on 127.0.0.1 for tests (controller-runtime's envtest idea).

The binaries come from the directory named by KUBEBUILDER_ASSETS, or from .venv/envtest
(scripts/install-envtest.sh). There is no controller-manager, scheduler or kubelet: no pod
runs, namespaces never finish deleting and service-account tokens come from TokenRequest.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import httpx
import yaml

from tests.support.certs import write_ca_and_serving_cert, write_key_pair
from tests.support.waits import until

REPO = Path(__file__).resolve().parents[2]
BINARIES = ("kube-apiserver", "etcd")
_REQUEST = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_PR_SET_PDEATHSIG = 1


class ApiServerError(RuntimeError):
    """The API server or etcd did not start."""


def assets_dir() -> Path | None:
    """KUBEBUILDER_ASSETS, else <repo>/.venv/envtest, if it holds both binaries; else None."""
    named = os.environ.get("KUBEBUILDER_ASSETS")
    directory = Path(named) if named else REPO / ".venv" / "envtest"
    if all(os.access(directory / name, os.X_OK) for name in BINARIES):
        return directory
    return None


def _free_ports(count: int) -> list[int]:
    """COUNT distinct ports on 127.0.0.1 that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies, so a killed run leaks no server."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _Process:
    """A server process whose output goes to a log file."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches pytest, whose teardown stops us
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL after TIMEOUT seconds."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _wait_ready(
    ready: Callable[[], bool], processes: Sequence[_Process], timeout: float, what: str
) -> None:
    """Poll READY until true; raise with the log tail if a process exits or time runs out."""

    def exited() -> str | None:
        for proc in processes:
            if (code := proc.popen.poll()) is not None:
                return f"{proc.name} exited with {code}"
        return None

    try:
        until(ready, timeout, f"not {what}", gone=exited)
    except AssertionError as exc:
        tails = "\n".join(f"--- {p.name}:\n{p.tail()}" for p in processes)
        raise ApiServerError(f"{exc}; logs end:\n{tails}") from None


def _answers(client: httpx.Client, url: str, ok: Callable[[httpx.Response], bool]) -> bool:
    try:
        return ok(client.get(url))
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def request_counts(metrics: str, code: str | None = None) -> Counter[str]:
    """apiserver_request_total in a /metrics text by 'VERB resource[/subresource]', watches
    excluded (they are counted when they end); only those answered with `code`, if given."""
    counts: Counter[str] = Counter()
    for match in _REQUEST.finditer(metrics):
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("verb", "WATCH") == "WATCH" or not labels.get("resource"):
            continue
        if code is not None and labels.get("code") != code:
            continue
        resource = "/".join(filter(None, (labels["resource"], labels.get("subresource"))))
        counts[f"{labels['verb']} {resource}"] += int(float(match["value"]))
    return counts


def write_kubeconfig(path: Path, server: str, ca_file: Path, user: str, token: str) -> Path:
    """A kubeconfig with one cluster, one token user and a current context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "envtest",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "envtest", "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


class ApiServer:
    """etcd and kube-apiserver on free 127.0.0.1 ports, with an admin token and RBAC on.

    Use as a context manager; both processes are stopped on exit and on a failed start."""

    def __init__(self, assets: Path, *, ready_timeout: float = 60.0, attempts: int = 3) -> None:
        self.assets, self.ready_timeout, self.attempts = assets, ready_timeout, attempts
        self.url = ""
        self.admin_token = secrets.token_hex(16)
        self.ready_seconds = 0.0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._processes: list[_Process] = []

    @property
    def workdir(self) -> Path:
        """The temporary directory with certificates, etcd's data, logs and kubeconfigs."""
        assert self._tmp is not None, "not started"
        return Path(self._tmp.name)

    @property
    def ca_file(self) -> Path:
        return self.workdir / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        """The admin's kubeconfig (group system:masters)."""
        return self.workdir / "admin.kubeconfig"

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start both servers and wait for /readyz; retry if a chosen port was taken."""
        self._tmp = tempfile.TemporaryDirectory(prefix="envtest-")
        try:
            self._write_credentials()
            for attempt in range(1, self.attempts + 1):
                try:
                    self._start_servers()
                    break
                except ApiServerError as exc:
                    self._stop_processes()
                    if "address already in use" not in str(exc) or attempt == self.attempts:
                        raise
            write_kubeconfig(self.kubeconfig, self.url, self.ca_file, "admin", self.admin_token)
        except BaseException:
            self.stop()
            raise

    def _write_credentials(self) -> None:
        write_ca_and_serving_cert(self.workdir)
        write_key_pair(self.workdir, "sa")
        (self.workdir / "tokens.csv").write_text(
            f"{self.admin_token},admin,admin-uid,system:masters\n"
        )

    def _start_servers(self) -> None:
        started = time.monotonic()
        d = self.workdir
        shutil.rmtree(d / "etcd", ignore_errors=True)  # a failed attempt's member data
        client_port, peer_port, secure_port = _free_ports(3)
        etcd_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                "--name=default",
                f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",
            ],
        )
        with httpx.Client(timeout=2) as plain:
            _wait_ready(
                lambda: _answers(
                    plain, f"{etcd_url}/health", lambda r: r.json()["health"] == "true"
                ),
                [etcd],
                self.ready_timeout,
                "etcd was healthy",
            )
        self.url = f"https://127.0.0.1:{secure_port}"
        kube = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={secure_port}",
                f"--cert-dir={d}",
                f"--tls-cert-file={d / 'tls.crt'}",
                f"--tls-private-key-file={d / 'tls.key'}",
                f"--client-ca-file={self.ca_file}",
                f"--token-auth-file={d / 'tokens.csv'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
            ],
        )
        tls = ssl.create_default_context(cafile=str(self.ca_file))
        auth = {"Authorization": f"Bearer {self.admin_token}"}
        with httpx.Client(verify=tls, headers=auth, timeout=2) as client:
            _wait_ready(
                lambda: _answers(client, f"{self.url}/readyz", lambda r: r.text == "ok"),
                [etcd, kube],
                self.ready_timeout,
                "kube-apiserver was ready",
            )
        self.ready_seconds = time.monotonic() - started

    def _spawn(self, name: str, args: list[str]) -> _Process:
        proc = _Process(name, [str(self.assets / name), *args], self.workdir / f"{name}.log")
        self._processes.append(proc)
        return proc

    def _stop_processes(self) -> None:
        # The API server first: with etcd gone, its graceful shutdown hangs.
        for proc in reversed(self._processes):
            proc.stop(timeout=15)
        self._processes.clear()

    def stop(self) -> None:
        """Stop both servers and remove the temporary directory; safe to call twice."""
        self._stop_processes()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run the venv's kubectl against this server (as admin unless KUBECONFIG is given)."""
        binary = Path(sys.executable).with_name("kubectl")
        return subprocess.run(
            [str(binary), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def requests(self, code: str | None = None) -> Counter[str]:
        """The requests it has served so far (`request_counts` of its /metrics), or those
        it answered with `code`."""
        tls = ssl.create_default_context(cafile=str(self.ca_file))
        auth = {"Authorization": f"Bearer {self.admin_token}"}
        metrics = httpx.get(f"{self.url}/metrics", verify=tls, headers=auth, timeout=30)
        return request_counts(metrics.raise_for_status().text, code)

    def token_for(self, service_account: str, namespace: str) -> Path:
        """A kubeconfig acting as NAMESPACE/SERVICE_ACCOUNT (created if missing)."""
        account = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": service_account, "namespace": namespace},
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(account))
        token = self.kubectl("create", "token", service_account, "-n", namespace).stdout.strip()
        user = f"system:serviceaccount:{namespace}:{service_account}"
        path = self.workdir / f"{namespace}.{service_account}.kubeconfig"
        return write_kubeconfig(path, self.url, self.ca_file, user, token)
