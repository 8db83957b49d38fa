"""The chart's `values.schema.json`: wrong values fail `helm install` with a clear message.

The rollout part comes from the rollout spec's CRD schema (converted from OpenAPI 3.0 to
JSON Schema draft 7), so the chart cannot accept a rollout the operator would refuse.
Pure.
"""

from __future__ import annotations

import json
from typing import Any

from modelcanary.durations import DURATION_PATTERN
from modelcanary.kube.crd import spec_schema

DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
VERSION = "^[0-9]+$"
GATEWAY_DURATION = "^([0-9]{1,5}(h|m|s|ms)){1,4}$"  # the Gateway API's Duration


def json_schema(openapi: Any) -> Any:
    """OpenAPI 3.0 (Kubernetes flavour) to JSON Schema draft 7."""
    if isinstance(openapi, list):
        return [json_schema(item) for item in openapi]
    if not isinstance(openapi, dict):
        return openapi
    out: dict[str, Any] = {}
    for key, value in openapi.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(value, bool):
            continue  # folded into minimum/maximum below
        out[key] = json_schema(value)
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if openapi.get(key) is True:
            out[key] = out.pop(bound)
    if openapi.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if openapi.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out:
        out["additionalProperties"] = False
    return out


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }
    if required:
        schema["required"] = list(required)
    return schema


def _string(pattern: str | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", **extra}
    if pattern:
        schema["pattern"] = pattern
    return schema


def schema() -> dict[str, Any]:
    spec = spec_schema()["properties"]
    labels = {"type": "object", "additionalProperties": {"type": "string"}}
    quantity = {"type": ["string", "integer"], "pattern": "^[0-9]+(\\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$"}
    secret = {"secretName": _string(), "key": _string(minLength=1)}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "modelcanary chart values",
        **_object(
            {
                "model": _object(
                    {
                        "name": _string(DNS_LABEL, description="the model's name (a DNS label)"),
                        "storageUri": _string("^[a-z0-9]+://", description="Triton repository"),
                        "stable": {
                            "type": ["string", "integer"],
                            "pattern": VERSION,
                            "minimum": 1,
                            "description": "stable version, e.g. 1",
                        },
                        "canary": {
                            "type": ["string", "integer"],
                            "pattern": "^([0-9]+)?$",
                            "minimum": 1,
                            "description": "canary version, or empty",
                        },
                    },
                    ("name", "storageUri", "stable"),
                ),
                "mode": {"enum": ["serverless", "standard"]},
                "triton": _object(
                    {
                        "image": _string(minLength=1),
                        "resources": _object(
                            {
                                "gpu": {"type": "integer", "minimum": 0},
                                "cpu": quantity,
                                "memory": quantity,
                            }
                        ),
                        "minReplicas": {"type": "integer", "minimum": 0},
                        "separateNodes": {"type": "boolean"},
                        "controlKey": _object(
                            {"secretName": _string(), "key": _string("^[-._a-zA-Z0-9]+$")}
                        ),
                    }
                ),
                "requestGuard": _object(
                    {
                        "enabled": {"type": "boolean"},
                        "maxBodyBytes": {"type": "integer", "minimum": 1},
                        "timeoutSeconds": {"type": "number", "exclusiveMinimum": 0},
                        "resources": {"type": "object"},
                    }
                ),
                "gateway": _object(
                    {
                        "parentRef": _object(
                            {"name": _string(minLength=1), "namespace": _string()}, ("name",)
                        ),
                        "hostnames": {"type": "array", "items": _string()},
                        "retry": _object(  # Gateway API HTTPRouteRetry
                            {
                                "attempts": {"type": "integer", "minimum": 0},
                                "codes": {
                                    "type": "array",
                                    "items": {"type": "integer", "minimum": 400, "maximum": 599},
                                },
                                "backoff": _string(GATEWAY_DURATION),
                            }
                        ),
                    }
                ),
                "rollout": _object(
                    {
                        "steps": json_schema(spec["steps"]),
                        "interval": json_schema(spec["interval"]),
                        "progressDeadline": json_schema(spec["progressDeadline"]),
                        "analysis": json_schema(spec["analysis"]),
                    }
                ),
                "alerts": _object(
                    {
                        "profile": {"enum": ["production", "demo"]},
                        "rules": _string(description="rendered rule file content, or empty"),
                        "source": {"enum": ["triton", "knative", "istio"]},
                        "ruleLabels": labels,
                    }
                ),
                "grafana": _object(
                    {
                        "dashboards": _object(
                            {
                                "enabled": {"type": "boolean"},
                                "labels": labels,
                                "annotations": labels,
                                "namespace": _string(
                                    "^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$",
                                    description="the ConfigMap's namespace; empty: the release's",
                                ),
                            }
                        )
                    }
                ),
                "prometheus": _object(
                    {"url": _string("^https?://"), "namespace": _string(), "podLabels": labels}
                ),
                "alertmanager": _object(
                    {
                        "url": _string("^https?://"),
                        "namespace": _string(),
                        "podLabels": labels,
                        "config": _object(
                            {
                                "enabled": {"type": "boolean"},
                                "pagerduty": _object(secret),
                                "slack": _object({**secret, "channel": _string()}),
                            }
                        ),
                    }
                ),
                "shadow": _object(
                    {
                        "enabled": {"type": "boolean"},
                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                        "queue": {"type": "integer", "minimum": 1},
                        "workers": {"type": "integer", "minimum": 1, "maximum": 64},
                        "timeoutSeconds": {"type": "number", "exclusiveMinimum": 0},
                        "maxEventBytes": {"type": "integer", "minimum": 1},
                        "pendingBytes": {"type": "integer", "minimum": 1},
                        "envFrom": {"type": "array", "items": {"type": "object"}},
                        "resources": {"type": "object"},
                    }
                ),
                "operator": _object(
                    {
                        "image": _object(
                            {
                                "repository": _string(minLength=1),
                                "tag": _string(),
                                "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                            }
                        ),
                        "replicas": {"type": "integer", "minimum": 1},
                        "tick": _string(DURATION_PATTERN, minLength=2),
                        "resources": {"type": "object"},
                        "metricsPort": {"type": "integer", "minimum": 1, "maximum": 65535},
                        "webhookPort": {"type": "integer", "minimum": 1, "maximum": 65535},
                    }
                ),
                "monitor": _object(
                    {
                        "kind": {"enum": ["PodMonitor", "ServiceMonitor"]},
                        "interval": _string(DURATION_PATTERN),
                        "labels": labels,
                    }
                ),
                "networkPolicy": _object(
                    {"enabled": {"type": "boolean"}, "alertmanager": {"type": "boolean"}}
                ),
            },
            ("model",),
        ),
    }


def render() -> str:
    return json.dumps(schema(), indent=2) + "\n"
