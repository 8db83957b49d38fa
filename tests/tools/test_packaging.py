"""The operator image and the chart agree with the code they ship."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelcanary.cli import build_parser

PROJECT = Path(__file__).resolve().parents[2]
# distribution name -> the module it provides, where they differ
MODULES = {
    "prometheus-client": "prometheus_client",
    "pyyaml": "yaml",
    "kserve-storage": "kserve_storage",
}
STDLIB = set(sys.stdlib_module_names)


def dockerfile_names() -> list[str]:
    """The distributions the Dockerfile installs for the operator."""
    text = (PROJECT / "Dockerfile").read_text()
    block = re.search(
        r"RUN pip install -c constraints.txt \\\n(.*?)&& pip install --no-deps", text, re.S
    )
    assert block, "the Dockerfile's operator package list is missing"
    return block.group(1).replace("\\", " ").replace('"', "").split()


def dockerfile_packages() -> set[str]:
    return {MODULES.get(n, n) for n in dockerfile_names()}


def test_the_image_installs_every_module_the_operator_imports() -> None:
    code = (
        "import sys, modelcanary.cli, modelcanary.kube.operator, "
        "modelcanary.commands.operator_command, modelcanary.gateway.guard, "
        "modelcanary.asgi_server; "
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    third_party = {m for m in imported.stdout.split() if m not in STDLIB and not m.startswith("_")}
    own = {"modelcanary"}
    # what the packages listed pull in themselves, or import only when installed
    # fmt: off
    transitive = {
        "cython_runtime", "grpc_tools", "importlib_resources", "jsonschema",
        "jsonschema_specifications", "kubernetes_validate", "orjson", "pythonjsonlogger",
        "referencing", "rpds", "wsaccel",
        "aiosignal", "annotated_types", "anyio", "attr", "attrs", "certifi", "charset_normalizer",
        "click", "dateutil", "frozenlist", "google", "grpc", "h11", "httpcore", "idna",
        "iso8601", "multidict", "oauthlib", "propcache", "pydantic_core", "requests",
        "requests_oauthlib", "rapidjson", "six", "sniffio", "typing_extensions",
        "typing_inspection", "urllib3", "websocket", "yarl", "aiohappyeyeballs", "flatbuffers",
        "packaging", "coloredlogs", "humanfriendly", "sympy", "mpmath", "geventhttpclient",
        "gevent", "zope", "greenlet", "python_multipart", "multipart",
        "pytz", "ml_dtypes", "onnx", "protobuf", "aiohttp_retry", "dotenv",
        "watchfiles", "websockets", "email_validator", "dns", "pkg_resources", "setuptools",
        "jsonpatch", "jsonpointer", "durationpy", "cachetools", "rsa", "pyasn1",
        "pyasn1_modules", "brotli", "markdown_it", "mdurl", "pygments", "rich", "shellingham",
        "typer", "colorama", "kubernetes_asyncio", "opentelemetry", "wrapt", "importlib_metadata",
        "zipp", "deprecated",
        "modelscope_hub", "tqdm", "cryptography",  # kserve-storage's
    }
    # fmt: on
    missing = third_party - dockerfile_packages() - own - transitive
    assert not missing, f"the operator imports {sorted(missing)}; add them to the Dockerfile"


@pytest.mark.slow
def test_the_image_python_layer_runs_the_operator_without_model_tooling(tmp_path: Path) -> None:
    """The Dockerfile's pip lines in a fresh venv: the operator starts (its --help) and
    imports its engine and adapters, and neither onnxruntime nor tritonclient is installed."""
    venv = tmp_path / "image"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    packages = sorted(n for n in dockerfile_names())
    subprocess.run([*pip, "-c", str(PROJECT / "constraints.txt"), *packages], check=True)
    subprocess.run([*pip, "--no-deps", str(PROJECT)], check=True)
    python = str(venv / "bin" / "python")
    code = (
        "import importlib.util, modelcanary.kube.operator, modelcanary.adapters.golden_check, "
        "modelcanary.gateway.guard, modelcanary.asgi_server; "
        "print(importlib.util.find_spec('onnxruntime'), importlib.util.find_spec('tritonclient'))"
    )
    found = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.split() == ["None", "None"]
    command = [str(venv / "bin" / "modelcanary"), "operator", "--help"]
    help_text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "--leader-election" in help_text


def test_the_chart_starts_the_operator_with_arguments_it_accepts() -> None:
    helm, chart = str(Path(sys.executable).with_name("helm")), str(PROJECT / "charts/modelcanary")
    options = ["--set", "model.canary=2", "--set", "operator.replicas=2"]
    command = [helm, "template", "rel", chart, *options]
    rendered = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    deployments = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    commands = {}
    for deployment in deployments:  # the operator and the shadow comparator
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        commands[args[0]] = build_parser().parse_args(args)
    assert sorted(commands) == ["comparator", "operator"]
    parsed = commands["operator"]
    assert parsed.namespace == "default"
    assert parsed.leader_election == "rel-modelcanary" and parsed.alertmanager.startswith("http")


def test_the_chart_starts_the_request_guard_with_arguments_it_accepts() -> None:
    """The predictors' request guard runs the operator's image: its flags parse, and it
    needs no tritonclient (tests/stack/test_request_guard.py runs it without)."""
    helm, chart = str(Path(sys.executable).with_name("helm")), str(PROJECT / "charts/modelcanary")
    command = [helm, "template", "rel", chart, "--set", "model.canary=2", "--set", "mode=standard"]
    rendered = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    services = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "InferenceService"]
    assert len(services) == 2
    for service in services:
        (guard,) = service["spec"]["predictor"]["containers"]
        parsed = build_parser().parse_args(guard["args"])
        assert parsed.command == "guard" and parsed.model == ["digits"]
        assert parsed.repository is None and parsed.upstream == "http://127.0.0.1:8085"
