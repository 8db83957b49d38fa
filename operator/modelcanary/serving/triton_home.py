"""Where the local Triton server lives, and how it gets there from PyPI.

The real `tritonserver` 2.51 ships inside the `nvidia-pytriton` wheel together with its
libraries and the python backend. Installing that wheel as a package would pin numpy<2
for the whole environment, so its server is extracted instead:

    HOME/wheel/pytriton/tritonserver/bin/tritonserver     (its rpath finds ../nvidia_pytriton.libs)
    HOME/wheel/nvidia_pytriton.libs/
    HOME/backends/python/          libtriton_python.so, triton_python_backend_utils.py, stub
    HOME/env/                      the Python the backend stubs run in: numpy<2, onnxruntime
    HOME/installed.json            what was installed; written last, so it marks completion

The stub's python backend exchanges tensors with Triton through numpy's 1.x ABI, which
numpy 2 breaks (outputs arrive empty), hence the small environment of its own.
HOME is `$MODELCANARY_TRITON_HOME`, else `<sys.prefix>/share/modelcanary/triton`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelcanary.errors import UsageError

PYTRITON = "nvidia-pytriton==0.7.0"
TRITON_VERSION = "2.51.0"
STUB_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
STUB_NUMPY = "numpy==1.26.4"
_SERVER = "pytriton/tritonserver"


@dataclass(frozen=True)
class TritonHome:
    """The paths of one installed Triton."""

    root: Path

    @classmethod
    def default(cls) -> TritonHome:
        configured = os.environ.get("MODELCANARY_TRITON_HOME")
        if configured:
            return cls(Path(configured))
        return cls(Path(sys.prefix) / "share" / "modelcanary" / "triton")

    @property
    def server(self) -> Path:
        return self.root / "wheel" / _SERVER / "bin" / "tritonserver"

    @property
    def libs(self) -> Path:
        return self.root / "wheel" / "nvidia_pytriton.libs"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    @property
    def env(self) -> Path:
        return self.root / "env"

    @property
    def marker(self) -> Path:
        return self.root / "installed.json"

    def is_installed(self) -> bool:
        return self.marker.is_file() and self.server.is_file()

    def require(self) -> TritonHome:
        """Self, or an error that says how to install."""
        if not self.is_installed():
            raise UsageError(
                f"Triton is not installed in {self.root}; run `modelcanary triton install` "
                "(or `make setup`)"
            )
        return self

    def environment(self) -> dict[str, str]:
        """Environment for tritonserver: the stub finds its python3 on PATH, and its
        libraries (libpython, libcudart) through LD_LIBRARY_PATH."""
        env = dict(os.environ)
        env["PATH"] = f"{self.env / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        libpython = sysconfig.get_config_var("LIBDIR") or ""
        paths = [p for p in (libpython, str(self.libs), env.get("LD_LIBRARY_PATH", "")) if p]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        return env


def install(home: TritonHome, say: Callable[[str], None] = print) -> bool:
    """Install Triton into home unless it is there; return whether anything was done."""
    if home.is_installed():
        return False
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise UsageError(
            "the Triton python backend embeds Python: this interpreter was built without "
            "a shared libpython"
        )
    home.root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".triton-install-", dir=home.root.parent))
    try:
        stage = TritonHome(staging / "home")
        stage.root.mkdir()
        say(f"downloading {PYTRITON} (55 MB) from the package index")
        wheel = _download_wheel(staging)
        say(f"extracting tritonserver {TRITON_VERSION} and the python backend")
        _extract(wheel, stage)
        say(f"creating the backend's Python environment ({STUB_NUMPY}, onnxruntime)")
        _make_env(stage)
        stage.marker.write_text(
            json.dumps(
                {
                    "triton": TRITON_VERSION,
                    "source": PYTRITON,
                    "stub_python": STUB_PYTHON,
                    "numpy": STUB_NUMPY,
                    "onnxruntime": _onnxruntime_version(),
                },
                indent=2,
            )
            + "\n"
        )
        if home.root.exists():  # an earlier, unfinished install
            shutil.rmtree(home.root)
        stage.root.rename(home.root)
        _fix_env_paths(stage.root, home.root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"Triton {TRITON_VERSION} installed in {home.root}")
    return True


def _run(command: list[str], what: str) -> None:
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout).strip().splitlines()
        raise UsageError(f"{what} failed: {detail[-1] if detail else completed.returncode}")


def _download_wheel(directory: Path) -> Path:
    options = ["--quiet", "--no-deps", "--only-binary=:all:", "-d", str(directory)]
    _run([sys.executable, "-m", "pip", "download", *options, PYTRITON], f"pip download {PYTRITON}")
    wheels = sorted(directory.glob("nvidia_pytriton-*.whl"))
    if not wheels:
        raise UsageError(f"pip download {PYTRITON} produced no wheel")
    return wheels[0]


def _extract(wheel: Path, home: TritonHome) -> None:
    stub = f"{_SERVER}/python_backend_stubs/{STUB_PYTHON}/triton_python_backend_stub"
    wanted = (f"{_SERVER}/bin/", f"{_SERVER}/backends/python/", "nvidia_pytriton.libs/")
    target = home.root / "wheel"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        if stub not in names:
            raise UsageError(f"{wheel.name} has no python backend stub for Python {STUB_PYTHON}")
        for name in names:
            if name.startswith(wanted) or name == stub:
                archive.extract(name, target)
    home.server.chmod(0o755)
    home.python_backend.mkdir(parents=True)
    for path in (target / _SERVER / "backends" / "python").iterdir():
        shutil.copy2(path, home.python_backend / path.name)
    shutil.copy2(target / stub, home.python_backend / "triton_python_backend_stub")
    (home.python_backend / "triton_python_backend_stub").chmod(0o755)


def _make_env(home: TritonHome) -> None:
    _run([sys.executable, "-m", "venv", str(home.env)], "creating the backend environment")
    pip = [str(home.env / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run(
        [*pip, STUB_NUMPY, f"onnxruntime=={_onnxruntime_version()}"],
        "installing numpy and onnxruntime into the backend environment",
    )


def _onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def _fix_env_paths(old: Path, new: Path) -> None:
    """A venv records its own path; after the rename, point it at the new place."""
    env = new / "env"
    for path in [env / "pyvenv.cfg", *(env / "bin").iterdir()]:
        if path.is_file() and not path.is_symlink():
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue
            if str(old) in text:
                path.write_text(text.replace(str(old), str(new)))
