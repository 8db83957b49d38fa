"""The Helm chart: lint, render for both modes and the main value combinations, and
validate every object (core kinds with kubernetes-validate, custom resources against the
upstream CRD schemas in tests/crds/, ModelCanary against our own CRD and the spec)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from modelcanary.kube import crd, values_schema
from modelcanary.rollout.spec import parse_spec

PROJECT = Path(__file__).resolve().parents[2]
CHART = PROJECT / "charts" / "modelcanary"
UPSTREAM = Path(__file__).parents[1] / "crds"
HELM = str(Path(sys.executable).with_name("helm"))
KUBERNETES = "1.30.0"
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
CORE = {
    "Deployment",
    "Service",
    "ServiceAccount",
    "Secret",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "NetworkPolicy",
    "CustomResourceDefinition",
}

# chart options, grouped as --set pairs
# fmt: off
COMBINATIONS = {
    "serverless-canary": ["--set", "model.canary=2"],
    "standard-canary": ["--set", "model.canary=2", "--set", "mode=standard"],
    "standard-retry": [
        "--set", "model.canary=2", "--set", "mode=standard", "--set", "gateway.retry.attempts=1",
        "--set", "gateway.retry.codes={500,502,503,504}", "--set", "gateway.retry.backoff=50ms",
    ],
    "stable-only": [],
    "standard-stable-only": ["--set", "mode=standard"],
    "ha-servicemonitor-demo": [
        "--set", "model.canary=3", "--set", "operator.replicas=2",
        "--set", "monitor.kind=ServiceMonitor", "--set", "alerts.profile=demo",
        "--set", "triton.separateNodes=true", "--set", "triton.resources.gpu=0",
        "--set", "alertmanager.config.pagerduty.secretName=pd",
        "--set", "alertmanager.config.slack.secretName=slack",
        "--set", "networkPolicy.alertmanager=true",
    ],
    "standard-no-guard": [
        "--set", "model.canary=2", "--set", "mode=standard", "--set", "requestGuard.enabled=false",
    ],
    "no-extras": [
        "--set", "model.canary=2", "--set", "networkPolicy.enabled=false",
        "--set", "alertmanager.config.enabled=false", "--set", "shadow.enabled=false",
    ],
}
# fmt: on


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HELM, *args], capture_output=True, text=True, check=False)


def render(options: list[str]) -> list[dict[str, Any]]:
    """The release's objects, with the CRD from crds/ (as `helm install` creates it)."""
    result = helm(
        "template", "rel", str(CHART), "--namespace", "models", "--include-crds", *options
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


class _Loader(yaml.SafeLoader):
    """PyYAML reads a bare `=` (an enum value in the AlertmanagerConfig CRD) as a 'value'
    tag it cannot build; it is the string "="."""


_Loader.add_constructor(
    "tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node)
)


def upstream_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema as JSON Schema, from the upstream CRDs."""
    schemas = {}
    for path in sorted(UPSTREAM.glob("*.yaml")):
        document = yaml.load(path.read_text(), Loader=_Loader)
        group, kind = document["spec"]["group"], document["spec"]["names"]["kind"]
        for version in document["spec"]["versions"]:
            schema = values_schema.json_schema(version["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{version['name']}", kind)] = _open(schema)
    return schemas


def _open(schema: Any) -> Any:
    """Upstream schemas are not closed: drop the additionalProperties the converter adds."""
    if isinstance(schema, dict):
        return {
            k: _open(v)
            for k, v in schema.items()
            if k != "additionalProperties" or not isinstance(v, bool)
        }
    if isinstance(schema, list):
        return [_open(v) for v in schema]
    return schema


SCHEMAS = upstream_schemas()
OWN = values_schema.json_schema(crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def test_helm_is_installed() -> None:
    result = helm("version", "--short")
    assert result.returncode == 0 and result.stdout.startswith("v3."), result.stderr


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_lint_strict(name: str) -> None:
    result = helm("lint", "--strict", str(CHART), *COMBINATIONS[name])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_every_rendered_object_is_valid(name: str) -> None:
    documents = render(COMBINATIONS[name])
    for document in documents:
        kind, api = document["kind"], document["apiVersion"]
        where = f"{kind} {document['metadata']['name']}"
        if kind in CORE:
            kubernetes_validate.validate(document, KUBERNETES, strict=True)
        elif kind == "ModelCanary":
            jsonschema.Draft7Validator(OWN).validate(document)
            parse_spec(document["spec"], where)
        else:
            assert (api, kind) in SCHEMAS, f"no upstream schema for {api} {kind}"
            errors = sorted(
                jsonschema.Draft7Validator(SCHEMAS[(api, kind)]).iter_errors(document), key=str
            )
            assert not errors, f"{where}: {errors[0].message} at {list(errors[0].absolute_path)}"


def kinds(documents: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        found.setdefault(document["kind"], []).append(document)
    return found


def test_serverless_mode_splits_one_inference_service() -> None:
    found = kinds(render(COMBINATIONS["serverless-canary"]))
    (isvc,) = found["InferenceService"]
    predictor = isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    # KServe then publishes the prev (stable) and latest (canary) URLs the checks ask
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"
    assert predictor["canaryTrafficPercent"] == 0  # the operator raises it step by step
    assert predictor["model"]["args"] == ["--model-config-name=v2"]
    assert "HTTPRoute" not in found
    (canary,) = found["ModelCanary"]
    assert canary["spec"]["canary"] == {"version": "2"}


def test_standard_mode_routes_between_two_inference_services() -> None:
    found = kinds(render(COMBINATIONS["standard-canary"]))
    names = [i["metadata"]["name"] for i in found["InferenceService"]]
    assert names == ["digits-v1", "digits-v2"]
    (route,) = found["HTTPRoute"]
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [
        ("digits-v1-predictor", 100),
        ("digits-v2-predictor", 0),
    ]
    role = next(d for d in found["Role"])
    assert any("httproutes" in rule["resources"] for rule in role["rules"])
    assert "retry" not in route["spec"]["rules"][0]  # only when asked for


def test_the_routes_retry_is_a_value() -> None:
    (route,) = kinds(render(COMBINATIONS["standard-retry"]))["HTTPRoute"]
    retry = route["spec"]["rules"][0]["retry"]
    assert retry == {"attempts": 1, "codes": [500, 502, 503, 504], "backoff": "50ms"}
    options = ["--set", "mode=standard", "--set", "gateway.retry.codes={200}"]
    refused = helm("template", "rel", str(CHART), *options)
    assert refused.returncode != 0 and "gateway.retry.codes.0" in refused.stderr


RESTRICTED = "model-repository,model-config,shared-memory,logging,trace"


def triton_container(found: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (runtime,) = found["ServingRuntime"]
    container: dict[str, Any] = runtime["spec"]["containers"][0]
    return container


def test_tritons_control_apis_need_a_key_from_a_generated_secret() -> None:
    """Loading models (a python backend runs its code), unloading them, model config,
    shared memory, logging and trace: restricted on HTTP and gRPC to the key in a Secret
    the chart generates; inference, metadata, health and statistics stay open."""
    found = kinds(render(COMBINATIONS["serverless-canary"]))
    container = triton_container(found)
    key = "modelcanary-control=$(MODELCANARY_TRITON_CONTROL_KEY)"
    assert f"--http-restricted-api={RESTRICTED}:{key}" in container["args"]
    assert f"--grpc-restricted-protocol={RESTRICTED}:{key}" in container["args"]
    (env,) = container["env"]
    assert env["name"] == "MODELCANARY_TRITON_CONTROL_KEY"
    ref = env["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "rel-modelcanary-triton-control", "key": "control-key"}
    secret = next(s for s in found["Secret"] if s["metadata"]["name"] == ref["name"])
    assert len(base64.b64decode(secret["data"]["control-key"])) == 40
    again = kinds(render(COMBINATIONS["serverless-canary"]))["Secret"]
    assert secret not in again  # a fresh key per install (an upgrade keeps the live one)


def test_tritons_control_key_can_come_from_the_users_secret() -> None:
    options = ["--set", "triton.controlKey.secretName=mine", "--set", "triton.controlKey.key=k"]
    found = kinds(render(options))
    (env,) = triton_container(found)["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "k"}
    assert not [s for s in found["Secret"] if "triton-control" in s["metadata"]["name"]]


GUARD_ARGS = [
    "guard",
    "--listen=0.0.0.0:8080",
    "--upstream=http://127.0.0.1:8085",
    "--model=digits",
    "--control-key-env=MODELCANARY_TRITON_CONTROL_KEY",
    "--max-body-bytes=8388608",
    "--timeout=30",
]


def predictor_ports(found: dict[str, list[dict[str, Any]]]) -> set[int]:
    """The ports anyone may reach on a predictor pod (the rule without a `from`)."""
    (policy,) = [p for p in found["NetworkPolicy"] if p["metadata"]["name"].endswith("-metrics")]
    (open_rule,) = [r for r in policy["spec"]["ingress"] if "from" not in r]
    return {p["port"] for p in open_rule["ports"]}


@pytest.mark.parametrize("name", ["serverless-canary", "standard-canary"])
def test_the_request_guard_is_the_only_way_in_to_triton(name: str) -> None:
    """Issue 25 in a cluster: every predictor pod (stable's and canary's) runs `modelcanary
    guard` as KServe's collocated transformer-container, the port KServe routes to; Triton
    listens on 127.0.0.1 only, HTTP on 8085 behind the guard, gRPC unreachable from outside
    the pod."""
    found = kinds(render(COMBINATIONS[name]))
    assert len(found["InferenceService"]) == (1 if name.startswith("serverless") else 2)
    for isvc in found["InferenceService"]:
        (guard,) = isvc["spec"]["predictor"]["containers"]
        assert guard["name"] == "transformer-container"  # KServe's name for a collocated one
        assert guard["image"] == "ghcr.io/modelcanary/modelcanary:" + APP_VERSION
        assert guard["args"] == GUARD_ARGS
        assert guard["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
        assert guard["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
        assert guard["resources"]["limits"] == {"cpu": "1", "memory": "256Mi"}
        (env,) = guard["env"]  # the key to ask Triton the model's max batch size
        assert env["valueFrom"] == triton_container(found)["env"][0]["valueFrom"]
        assert guard["securityContext"]["readOnlyRootFilesystem"] is True
    (runtime,) = found["ServingRuntime"]
    triton = triton_container(found)
    for flag in ("--http-address=127.0.0.1", "--http-port=8085", "--grpc-address=127.0.0.1"):
        assert flag in triton["args"]
    assert "ports" not in triton  # Knative: one container has the port, the guard
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    assert predictor_ports(found) == {8080, 8012, 8022}


def test_without_the_request_guard_triton_faces_the_cluster() -> None:
    found = kinds(render(COMBINATIONS["standard-no-guard"]))
    for isvc in found["InferenceService"]:
        assert "containers" not in isvc["spec"]["predictor"]
    triton = triton_container(found)
    assert "--http-port=8080" in triton["args"]
    assert not [a for a in triton["args"] if a.startswith(("--http-address", "--grpc-address"))]
    assert triton["ports"] == [{"name": "h2c", "containerPort": 9000, "protocol": "TCP"}]
    assert found["ServingRuntime"][0]["spec"]["protocolVersions"] == ["v2", "grpc-v2"]
    assert predictor_ports(found) == {8080, 9000, 8012, 8022}


def test_the_request_guards_limits_are_values() -> None:
    options = [
        "--set",
        "requestGuard.maxBodyBytes=1048576",
        "--set",
        "requestGuard.timeoutSeconds=5",
    ]
    (isvc,) = kinds(render(options))["InferenceService"]
    (guard,) = isvc["spec"]["predictor"]["containers"]
    assert "--max-body-bytes=1048576" in guard["args"] and "--timeout=5" in guard["args"]


def operator_deployment(found: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return next(d for d in found["Deployment"] if d["metadata"]["name"] == "rel-modelcanary")


COMPARATOR_URL = "http://rel-modelcanary-comparator.models.svc.cluster.local:8080"


def test_serverless_predictor_logs_to_the_comparator() -> None:
    found = kinds(render(COMBINATIONS["serverless-canary"]))
    (isvc,) = found["InferenceService"]
    # both revisions log; the comparator compares the answers stable gave
    assert isvc["spec"]["predictor"]["logger"] == {"mode": "all", "url": COMPARATOR_URL + "/"}
    deployments = {d["metadata"]["name"]: d for d in found["Deployment"]}
    comparator = deployments["rel-modelcanary-comparator"]["spec"]
    assert comparator["replicas"] == 1  # a request and its answer must meet in one pod
    (container,) = comparator["template"]["spec"]["containers"]
    assert container["args"][:2] == ["comparator", "--repository=s3://models/model_repo"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (operator,) = deployments["rel-modelcanary"]["spec"]["template"]["spec"]["containers"]
    assert f"--comparator={COMPARATOR_URL}" in operator["args"]
    mounts = {m["name"]: m["mountPath"] for m in operator["volumeMounts"]}
    token = "--comparator-token-file=/var/run/modelcanary/comparator/token"
    assert token in operator["args"] and mounts["comparator-token"] in token
    monitors = {m["metadata"]["name"] for m in found["PodMonitor"]}
    assert "rel-modelcanary-comparator" in monitors


def test_standard_mode_logs_only_the_stable_version() -> None:
    found = kinds(render(COMBINATIONS["standard-canary"]))
    loggers = {
        i["metadata"]["name"]: i["spec"]["predictor"].get("logger")
        for i in found["InferenceService"]
    }
    assert loggers == {"digits-v1": {"mode": "all", "url": COMPARATOR_URL + "/"}, "digits-v2": None}


def test_the_comparator_is_scraped_by_servicemonitor_too() -> None:
    found = kinds(render(COMBINATIONS["ha-servicemonitor-demo"]))
    monitors = {m["metadata"]["name"]: m for m in found["ServiceMonitor"]}
    selector = monitors["rel-modelcanary-comparator"]["spec"]["selector"]["matchLabels"]
    service = next(
        s for s in found["Service"] if s["metadata"]["name"] == "rel-modelcanary-comparator"
    )
    assert selector.items() <= service["metadata"]["labels"].items()


def test_without_shadow_there_is_no_comparator_and_no_logger() -> None:
    documents = render(COMBINATIONS["no-extras"])
    assert not any("comparator" in d["metadata"]["name"] for d in documents)
    found = kinds(documents)
    assert "logger" not in found["InferenceService"][0]["spec"]["predictor"]
    (operator,) = operator_deployment(found)["spec"]["template"]["spec"]["containers"]
    assert not any(a.startswith("--comparator") for a in operator["args"])


def test_operator_pod_is_locked_down_and_probed() -> None:
    found = kinds(render(COMBINATIONS["serverless-canary"]))
    deployment = operator_deployment(found)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"] and container["readinessProbe"] and container["resources"]
    role = found["Role"][0]
    verbs = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert verbs[("serving.kserve.io", "inferenceservices")] == {"get", "list", "watch", "patch"}
    assert all(
        "delete" not in v and "create" not in v
        for (g, r), v in verbs.items()
        if r not in ("events", "leases")
    )


def test_operator_probes_follow_the_tick_loop_and_the_lease() -> None:
    """Liveness: the tick loop goes round (/livez); readiness: holding the Lease (/readyz).
    A new pod is not Ready while an old one holds the Lease, so an update replaces the
    old pods first, whatever the number of replicas."""
    for name, replicas in (("serverless-canary", 1), ("ha-servicemonitor-demo", 2)):
        deployment = operator_deployment(kinds(render(COMBINATIONS[name])))
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert deployment["spec"]["replicas"] == replicas
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "100%"},
        }


def test_prometheus_rule_embeds_the_generated_rules() -> None:
    found = kinds(render(COMBINATIONS["ha-servicemonitor-demo"]))
    (rule,) = found["PrometheusRule"]
    demo = yaml.safe_load((CHART / "files" / "rules" / "demo.yaml").read_text())
    assert rule["spec"]["groups"] == demo["groups"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert {d["kind"] for d in found["ServiceMonitor"]} == {"ServiceMonitor"}
    assert "--leader-election=rel-modelcanary" in " ".join(
        operator_deployment(found)["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    receivers = {r["name"]: r for r in found["AlertmanagerConfig"][0]["spec"]["receivers"]}
    assert receivers["oncall"]["pagerdutyConfigs"][0]["routingKey"]["name"] == "pd"
    assert receivers["controller"]["webhookConfigs"][0]["url"].endswith("/alertmanager/webhook")
    isvc = found["InferenceService"][0]["spec"]["predictor"]
    assert isvc["affinity"]["podAntiAffinity"]  # canary and stable on different nodes


def test_the_operator_may_hold_its_leader_lease() -> None:
    """Leader election needs get, create and update on Leases, nothing more."""
    found = kinds(render(COMBINATIONS["ha-servicemonitor-demo"]))
    (role,) = found["Role"]
    leases = [r for r in role["rules"] if "leases" in r["resources"]]
    assert leases == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        }
    ]


def test_network_policy_lets_only_prometheus_reach_metrics_ports() -> None:
    found = kinds(render(COMBINATIONS["serverless-canary"]))
    policies = {p["metadata"]["name"]: p for p in found["NetworkPolicy"]}
    triton = policies["rel-modelcanary-triton-metrics"]["spec"]["ingress"]
    metrics = next(rule for rule in triton if {"port": 8002, "protocol": "TCP"} in rule["ports"])
    assert metrics["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert not any(
        "from" not in rule and {"port": 8002, "protocol": "TCP"} in rule["ports"] for rule in triton
    )


def test_alertmanager_may_be_locked_down_to_prometheus_and_the_operator() -> None:
    """Issue 25 probe 3b: anyone who reached Alertmanager's API posted an alert that paged
    on-call. Opt-in (the policy lives in Alertmanager's namespace)."""
    assert "rel-modelcanary-alertmanager" not in {
        p["metadata"]["name"]
        for p in kinds(render(COMBINATIONS["serverless-canary"]))["NetworkPolicy"]
    }
    found = kinds(render(COMBINATIONS["ha-servicemonitor-demo"]))
    (policy,) = [
        p for p in found["NetworkPolicy"] if p["metadata"]["name"].endswith("-alertmanager")
    ]
    assert policy["metadata"]["namespace"] == "monitoring"
    api, gossip = policy["spec"]["ingress"]
    assert api["ports"] == [{"port": 9093, "protocol": "TCP"}]
    senders = [
        (s["namespaceSelector"]["matchLabels"], s["podSelector"]["matchLabels"])
        for s in api["from"]
    ]
    operator_pods = operator_deployment(found)["spec"]["selector"]["matchLabels"]
    assert senders == [
        ({"kubernetes.io/metadata.name": "monitoring"}, {"app.kubernetes.io/name": "prometheus"}),
        ({"kubernetes.io/metadata.name": "models"}, operator_pods),
    ]
    assert {p["port"] for p in gossip["ports"]} == {9094}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--set", "mode=blue"], "mode"),
        (["--set", "model.name=Digits_X"], "model.name"),
        (["--set", "rollout.steps={5,150}"], "rollout.steps"),
        (["--set", "rollout.interval=soon"], "rollout.interval"),
        (["--set", "rollout.analysis.errorRatio.max=2"], "rollout.analysis.errorRatio.max"),
        (["--set", "rollout.analysis.colour=red"], "rollout.analysis"),
        (["--set", "triton.resources.gpu=-1"], "triton.resources.gpu"),
        (["--set", "triton.controlKey.key=a/b"], "triton.controlKey.key"),
        (["--set", "requestGuard.enabled=maybe"], "requestGuard.enabled"),
        (["--set", "requestGuard.maxBodyBytes=0"], "requestGuard.maxBodyBytes"),
        (["--set", "requestGuard.timeoutSeconds=0"], "requestGuard.timeoutSeconds"),
        (["--set", "requestGuard.colour=red"], "requestGuard"),
    ],
)
def test_wrong_values_are_rejected_naming_the_value(options: list[str], message: str) -> None:
    result = helm("template", "rel", str(CHART), *options)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_committed_crd_and_values_schema_match_the_generators() -> None:
    assert (CHART / "crds" / "modelcanary.io_modelcanaries.yaml").read_text() == crd.render(), (
        "run `modelcanary crd render`"
    )
    assert (CHART / "values.schema.json").read_text() == values_schema.render(), (
        "run `modelcanary crd render`"
    )
    json.loads(values_schema.render())


SPEC = {"model": "digits", "stable": {"version": "1"}, "canary": {"version": "2"}}


@pytest.mark.parametrize(
    ("change", "valid"),
    [
        ({}, True),
        ({"stable": {"version": 1}, "canary": {"version": 2}}, True),
        ({"steps": [10, 100], "interval": "1m30s", "progressDeadline": "1h"}, True),
        ({"analysis": {"errorRatio": {"maxAboveStable": None}}}, True),
        ({"interval": "soon"}, False),
        ({"interval": "5"}, False),
        ({"steps": [0, 100]}, False),
        ({"steps": []}, False),
        ({"analysis": {"alpha": 0}}, False),
        ({"steps": [*range(1, 20), 100]}, True),
        ({"steps": [*range(1, 21), 100]}, False),  # over maxItems
        ({"analysis": {"errorRatio": {"max": 1.5}}}, False),
        ({"analysis": {"latencyP99": {"maxRatioToStable": 1}}}, False),
        ({"analysis": {"noData": {"action": "explode"}}}, False),
        ({"model": ""}, False),
    ],
)
def test_the_crd_accepts_what_the_engine_accepts(change: dict[str, Any], valid: bool) -> None:
    spec = {**SPEC, **change}
    engine_ok = True
    try:
        parse_spec(spec, "test")
    except Exception:
        engine_ok = False
    schema_ok = jsonschema.Draft7Validator(OWN["properties"]["spec"]).is_valid(spec)
    assert (engine_ok, schema_ok) == (valid, valid)


def test_what_a_schema_cannot_say_is_a_cel_rule() -> None:
    spec = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    rules += [r["rule"] for r in spec["properties"]["steps"]["x-kubernetes-validations"]]
    assert "string(self.canary.version) != string(self.stable.version)" in rules
    assert "size(self) == 0 || self[size(self) - 1] == 100" in rules
    assert any("isSorted" in r for r in rules)
    assert spec["properties"]["steps"]["maxItems"] == 20  # bounds the rules' estimated cost


def test_the_crd_is_in_crds_and_no_template_renders_one() -> None:
    """crds/: Helm creates the CRD before the templates (so one release can hold it and
    its first ModelCanary), and no release owns it (so a second release can install)."""
    (crd_file,) = (CHART / "crds").glob("*.yaml")
    assert yaml.safe_load(crd_file.read_text())["metadata"]["name"] == crd.NAME
    for options in COMBINATIONS.values():
        result = helm("template", "rel", str(CHART), *options)
        assert result.returncode == 0, result.stderr
        assert "kind: CustomResourceDefinition" not in result.stdout
    retired = helm("template", "rel", str(CHART), "--set", "crds.install=false")
    assert retired.returncode != 0 and "crds" in retired.stderr  # use --skip-crds
