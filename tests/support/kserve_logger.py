"""Plays KServe's inference logger in tests: a request sent to a predictor, then the two
CloudEvents the logger beside it posts (HTTP binary mode, as cloudevents sdk-go sends them)
to its `spec.predictor.logger.url`: the request, and the response when it was a 200."""

from __future__ import annotations

import json
import uuid

import httpx
import numpy as np

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


def infer_body(x: np.ndarray) -> bytes:
    tensor = {
        "name": "pixels",
        "shape": list(x.shape),
        "datatype": "FP32",
        "data": x.ravel().tolist(),
    }
    return json.dumps({"inputs": [tensor]}).encode()


def ce_headers(kind: str, id: str, service: str, source: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": id,
        "ce-type": kind,
        "ce-source": source,
        "ce-time": "2025-01-01T00:00:00Z",
        "ce-inferenceservicename": service,
        "ce-namespace": "models",
        "ce-component": "predictor",
        "ce-endpoint": "",
        "ce-metadata": "{}",
        "content-type": "application/json",
    }


def serve_and_log(
    client: httpx.Client,
    predictor: str,
    comparator: str,
    model: str,
    x: np.ndarray,
    version: str | None = None,
    service: str = "digits",
    source: str = "http://localhost:9081/",
) -> httpx.Response:
    """Send `x` to the predictor as a user would (pinned to `version` where one server
    plays several predictors), then log the request and its answer to the comparator as
    KServe's logger does; the predictor's answer."""
    id, body = str(uuid.uuid4()), infer_body(x)
    head = {"content-type": "application/json"}
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    answer = client.post(predictor + path, content=body, headers=head)
    logged = client.post(
        comparator, content=body, headers=ce_headers(REQUEST_TYPE, id, service, source)
    )
    assert logged.status_code == 202, logged.text
    if answer.status_code == 200:
        response_headers = ce_headers(RESPONSE_TYPE, id, service, source)
        logged = client.post(comparator, content=answer.content, headers=response_headers)
        assert logged.status_code == 202, logged.text
    return answer
