"""Issue 13 defect 7: `modelcanary fault` validated nothing. It now accepts only a model and
version the running stack serves, and writes only inside the stack's fault directory."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelcanary.asgi_server import AppServer, starlette_app
from tests.conftest import CliResult

Cli = Callable[..., CliResult]
SERVED = {("digits", "1"), ("digits", "2"), ("ranker", "3")}


def fake_triton() -> Starlette:
    """Triton's readiness and model metadata for digits versions 1 and 2."""

    async def ready(request: Request) -> JSONResponse:
        model, version = request.path_params["model"], request.path_params["version"]
        if (model, version) in SERVED:
            return JSONResponse({}, 200)
        return JSONResponse({"error": f"Request for unknown model: '{model}' is not found"}, 400)

    async def metadata(request: Request) -> JSONResponse:
        model = request.path_params["model"]
        versions = sorted(v for m, v in SERVED if m == model)
        if not versions:
            return JSONResponse({"error": f"Request for unknown model: '{model}'"}, 400)
        return JSONResponse({"name": model, "versions": versions}, 200)

    return starlette_app(
        [
            Route("/v2/models/{model}/versions/{version}/ready", ready, methods=["GET"]),
            Route("/v2/models/{model}", metadata, methods=["GET"]),
        ]
    )


@pytest.fixture(scope="module")
def triton() -> Iterator[str]:
    server = AppServer(fake_triton(), name="fake triton")
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def run_dir(tmp_path: Path, triton: str) -> Path:
    """The run directory of a running `modelcanary up`."""
    run = tmp_path / "a" / "b" / "run"
    run.mkdir(parents=True)
    (run / "up.json").write_text(
        json.dumps({"triton_http": triton, "faults_dir": str(run / "faults"), "model": "digits"})
    )
    return run


def fault(cli: Cli, run_dir: Path, model: str, version: str, *more: str) -> CliResult:
    return cli("fault", "--run-dir", run_dir, "--model", model, "--version", version, *more)


def refused(result: CliResult, message: str) -> None:
    assert result.code == 2, (result.code, result.err)
    assert result.err.startswith("modelcanary fault: error: ") and result.err.count("\n") == 1
    assert message in result.err, result.err


def test_a_served_version_gets_its_fault(cli: Cli, run_dir: Path) -> None:
    result = fault(cli, run_dir, "digits", "2", "--error-ratio", "0.3")
    assert result.code == 0, result.err
    written = json.loads((run_dir / "faults" / "digits" / "2.json").read_text())
    assert written == {"error_ratio": 0.3, "latency_ms": 0.0}
    assert fault(cli, run_dir, "digits", "2", "--clear").code == 0
    assert not (run_dir / "faults" / "digits" / "2.json").exists()


def test_a_model_name_cannot_leave_the_run_directory(cli: Cli, run_dir: Path) -> None:
    refused(
        fault(cli, run_dir, "../../etc", "1", "--error-ratio", "1"),
        "--model '../../etc' is not a valid model name",
    )
    assert not (run_dir.parent / "etc").exists() and not (run_dir / "faults").exists()


@pytest.mark.parametrize(
    ("model", "version", "message"),
    [
        ("cats", "1", "does not serve cats version 1 (it serves digits 1, 2)"),
        ("digits", "7", "does not serve digits version 7 (it serves digits 1, 2)"),
    ],
)
def test_an_unknown_model_or_version_is_refused(
    cli: Cli, run_dir: Path, model: str, version: str, message: str
) -> None:
    refused(fault(cli, run_dir, model, version, "--error-ratio", "0.5"), message)
    assert not (run_dir / "faults").exists()


def test_a_stack_of_several_models_names_what_each_serves(cli: Cli, run_dir: Path) -> None:
    urls = json.loads((run_dir / "up.json").read_text())
    del urls["model"]
    urls["models"] = [{"name": "digits", "versions": [1, 2]}, {"name": "ranker", "versions": [3]}]
    (run_dir / "up.json").write_text(json.dumps(urls))
    refused(
        fault(cli, run_dir, "ranker", "7", "--error-ratio", "0.5"),
        "does not serve ranker version 7 (it serves digits 1, 2; ranker 3)",
    )
    assert fault(cli, run_dir, "ranker", "3", "--error-ratio", "0.5").code == 0
    assert (run_dir / "faults" / "ranker" / "3.json").exists()


def test_no_running_stack_is_refused(cli: Cli, tmp_path: Path) -> None:
    refused(
        fault(cli, tmp_path, "digits", "1", "--error-ratio", "0.5"),
        f"no running stack in {tmp_path}",
    )


def test_a_stack_that_stopped_is_refused(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "serve.json").write_text(
        json.dumps({"http": "http://127.0.0.1:9", "faults_dir": str(tmp_path / "faults")})
    )
    refused(
        fault(cli, tmp_path, "digits", "1", "--error-ratio", "0.5"),
        "Triton at http://127.0.0.1:9 does not answer",
    )
    assert not (tmp_path / "faults").exists()
