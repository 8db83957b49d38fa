"""One real `tritonserver` process on CPU, serving chosen versions from a repository.

The server runs in explicit model-control mode; `load` sends Triton's repository load
request with a config override that pins the wanted versions, so the repository on disk
is never edited. The process gets a session of its own (a terminal's Ctrl-C reaches only
modelcanary, which stops the server once it is ready) and a shared-memory prefix of its
own, so `stop` can reap every backend stub and remove exactly its /dev/shm regions.
`restart` (after a crash) does the same cleanup, then starts on the same ports and loads
the same versions again.

Triton's control APIs (model repository: load, unload, index; model config; shared memory;
logging; trace) are restricted on HTTP and gRPC to requests carrying a control key only
this object holds (`control_headers`): without it, anyone who reaches the port could load
a python-backend model (running their code) or unload a version mid-rollout. Inference,
metadata, health and statistics stay open.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
from google.protobuf import json_format

from modelcanary.errors import UsageError
from modelcanary.http.triton_control import CONTROL_HEADER
from modelcanary.modelrepo.repository import CONFIG, ModelRepository
from modelcanary.process import LOOPBACK, exit_reason, free_ports, log_tail, wait_until_ready
from modelcanary.serving.triton_home import TritonHome
from modelcanary.triton_backend import MODEL_PY

SHM_DIR = Path("/dev/shm")
FAULTS_PARAMETER = "MODELCANARY_FAULTS"
# Triton's APIs only the stack may use (with its key, in http.triton_control's header)
RESTRICTED_APIS = ("model-repository", "model-config", "shared-memory", "logging", "trace")


def restriction_flags(key: str) -> list[str]:
    """tritonserver's flags restricting RESTRICTED_APIS to requests carrying `key`."""
    apis = ",".join(RESTRICTED_APIS)
    return [
        f"--http-restricted-api={apis}:{CONTROL_HEADER}={key}",
        f"--grpc-restricted-protocol={apis}:{CONTROL_HEADER}={key}",
    ]


@dataclass(frozen=True)
class Endpoints:
    """Where a running server listens."""

    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def http(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def metrics(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"


class TritonServer:
    """Start, load, stop. Use as a context manager to be sure it stops."""

    def __init__(
        self,
        repo: Path,
        run_dir: Path,
        home: TritonHome | None = None,
        faults_dir: Path | None = None,
    ) -> None:
        self.repo = ModelRepository(repo.resolve())
        self.run_dir = run_dir.resolve()
        self.home = home or TritonHome.default()
        self.faults_dir = faults_dir.resolve() if faults_dir else None
        self.shm_prefix = f"modelcanary_{uuid.uuid4().hex[:12]}_"
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoints: Endpoints | None = None
        self.log_path = self.run_dir / "triton.log"
        self.loaded: dict[str, list[int]] = {}  # what `restart` loads again
        self.control_key = secrets.token_urlsafe(32)  # kept across restarts

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 60.0, endpoints: Endpoints | None = None) -> Endpoints:
        """Start the process (on free ports, or these) and wait until its HTTP endpoint is
        ready."""
        self.home.require()
        backends = self._backend_directory()
        if endpoints is None:
            http, grpc, metrics = free_ports(3)
        else:
            http, grpc, metrics = endpoints.http_port, endpoints.grpc_port, endpoints.metrics_port
        command = [
            str(self.home.server),
            f"--model-repository={self.repo.root}",
            f"--backend-directory={backends}",
            "--model-control-mode=explicit",
            "--disable-auto-complete-config",
            "--allow-gpu-metrics=false",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            f"--http-address={LOOPBACK}",
            f"--http-port={http}",
            f"--grpc-address={LOOPBACK}",
            f"--grpc-port={grpc}",
            f"--metrics-address={LOOPBACK}",
            f"--metrics-port={metrics}",
            *restriction_flags(self.control_key),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.home.environment(),
                start_new_session=True,
            )
        self.endpoints = Endpoints(http, grpc, metrics)
        self._wait(f"{self.endpoints.http}/v2/health/ready", timeout, "to become ready")
        return self.endpoints

    def load(self, model: str, versions: list[int], timeout: float = 120.0) -> None:
        """Load exactly these versions of a model side by side, and wait until each is ready."""
        endpoints = self._require_running()
        available = self.repo.versions(model)
        config = self.repo.read_config(model)
        if config is None:
            raise UsageError(f"{self.repo.root}: no model {model!r} (no {model}/{CONFIG})")
        missing = [v for v in versions if v not in available]
        if missing or not versions:
            wanted = ", ".join(map(str, missing)) or "(none given)"
            raise UsageError(
                f"{self.repo.root}/{model}: no version {wanted} "
                f"(versions: {', '.join(map(str, available)) or 'none'})"
            )
        config.version_policy.Clear()
        config.version_policy.specific.versions.extend(sorted(versions))
        if self.faults_dir is not None:
            config.parameters[FAULTS_PARAMETER].string_value = str(self.faults_dir)
        override = json_format.MessageToJson(config, preserving_proto_field_name=True)
        url = f"{endpoints.http}/v2/repository/models/{model}/load"
        try:
            response = httpx.post(
                url,
                json={"parameters": {"config": override}},
                headers=self.control_headers(),
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise UsageError(f"loading {model} on {url} failed: {exc}") from None
        if response.status_code != 200:
            raise UsageError(f"Triton could not load {model}: {_triton_error(response)}")
        for version in versions:
            ready = httpx.get(
                f"{endpoints.http}/v2/models/{model}/versions/{version}/ready", timeout=5.0
            )
            if ready.status_code != 200:
                raise UsageError(f"{model} version {version} is not ready after loading")
        self.loaded[model] = sorted(versions)

    def control_headers(self) -> dict[str, str]:
        """The HTTP header that opens Triton's restricted (control) APIs."""
        return {CONTROL_HEADER: self.control_key}

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def exited(self) -> str | None:
        """Why the server is not running (None while it runs)."""
        return exit_reason(self.process)

    def restart(self, timeout: float = 60.0) -> Endpoints:
        """After a crash: reap what is left of the old server (its backend stubs, its shared
        memory), start on the same ports and load the same versions again."""
        if self.endpoints is None:
            raise UsageError("Triton was never started; nothing to restart")
        endpoints, loaded = self.endpoints, dict(self.loaded)
        self.stop(timeout=5.0)
        self.start(timeout, endpoints)
        try:
            for model, versions in loaded.items():
                self.load(model, versions)
        except BaseException:
            self.stop()  # a server without its versions is no restart: try again from scratch
            raise
        return endpoints

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop the server, reap every process it started, remove its shared memory."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid)
                process.wait(10)
        _kill_group(process.pid)  # stubs that outlived the server share its process group
        self.remove_shared_memory()
        return process.returncode

    def remove_shared_memory(self) -> list[Path]:
        """Delete this server's /dev/shm regions; return what was removed."""
        removed = []
        for path in SHM_DIR.glob(f"{self.shm_prefix}*"):
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    def log_tail(self, lines: int = 5) -> str:
        return log_tail(self.log_path, lines)

    def _require_running(self) -> Endpoints:
        if self.process is None or self.endpoints is None or self.process.poll() is not None:
            raise UsageError(f"Triton is not running (log: {self.log_path})")
        return self.endpoints

    def _wait(self, url: str, timeout: float, what: str) -> None:
        assert self.process is not None
        outcome = wait_until_ready(url, self.process, timeout)
        if outcome == "ready":
            return
        if outcome == "exited":
            code = self.process.returncode
            self.stop()
            raise UsageError(
                f"tritonserver exited with code {code} before becoming ready: "
                f"{self.log_tail()} (log: {self.log_path})"
            )
        self.stop()
        raise UsageError(
            f"tritonserver did not {what} within {timeout:.0f} s (log: {self.log_path})"
        )

    def _backend_directory(self) -> Path:
        """`backends/python` from the Triton home and `backends/onnxruntime/model.py` from
        this package, fresh for every start so the backend matches the installed code."""
        backends = self.run_dir / "backends"
        shutil.rmtree(backends, ignore_errors=True)
        (backends / "onnxruntime").mkdir(parents=True)
        (backends / "python").symlink_to(self.home.python_backend, target_is_directory=True)
        shutil.copy2(MODEL_PY, backends / "onnxruntime" / "model.py")
        return backends


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _triton_error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text.strip() or f"HTTP {response.status_code}"
