"""Requests the client broke, through the gateway to the real Triton: client errors of
the version they were routed to, never its errors. The issue: fifteen unauthenticated
broken-JSON requests pinned to a healthy canary got it rolled back."""

from __future__ import annotations

import gzip
import json
import socket

import httpx
import numpy as np
import pytest

from tests.support.gateway import (
    CLIENT_ERRORS,
    HEADER,
    StartGateway,
    X,
    body,
    digits_route,
    server_errors,
    value,
)
from tests.support.waits import until

pytestmark = pytest.mark.slow


def test_broken_json_pinned_to_the_canary_is_a_client_error(
    triton: str, start_gateway: StartGateway
) -> None:
    """The issue's attack: fifteen unauthenticated requests with broken JSON pinned to the
    canary. Triton answers 500 to them; they must not count against the canary."""
    url = start_gateway(digits_route(triton, {"1": 90, "2": 10}))
    broken = b'{"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.5,'
    for _ in range(15):
        response = httpx.post(
            f"{url}/v2/models/digits/infer",
            content=broken,
            headers={HEADER: "2", "content-type": "application/json"},
        )
        assert response.status_code == 400, response.text
        assert "the request body is not a JSON object" in response.json()["error"]
    assert server_errors(url, "2") == 0
    assert value(url, CLIENT_ERRORS, model="digits", version="2", reason="invalid_json") == 15
    # never forwarded: the canary answered nothing
    assert value(url, "modelcanary_gateway_requests_total", model="digits", version="2") == 0


def test_an_upload_aborted_midway_is_not_forwarded(
    triton: str, start_gateway: StartGateway
) -> None:
    """A Content-Length larger than what is sent, then the client closes the connection."""
    url = start_gateway(digits_route(triton, {"1": 90, "2": 10}))
    host, port = url.removeprefix("http://").split(":")
    whole = json.dumps(body(X)).encode()
    head = (
        f"POST /v2/models/digits/infer HTTP/1.1\r\nhost: {host}\r\n"
        f"content-type: application/json\r\n{HEADER}: 2\r\n"
        f"content-length: {len(whole)}\r\n\r\n"
    ).encode()
    for _ in range(3):
        with socket.create_connection((host, int(port))) as client:
            client.sendall(head + whole[: len(whole) // 2])
    labels = {"model": "digits", "version": "2", "reason": "client_gone"}
    until(lambda: value(url, CLIENT_ERRORS, **labels) >= 3, 10, "3 aborted uploads not counted")
    assert value(url, CLIENT_ERRORS, **labels) == 3
    assert server_errors(url, "2") == 0
    assert value(url, "modelcanary_gateway_requests_total", model="digits", version="2") == 0


def test_requests_triton_cannot_parse_are_client_errors(
    triton: str, start_gateway: StartGateway
) -> None:
    """Well-formed JSON that Triton answers 500 to (its parse errors are internal errors in
    2.51): 400, a client error. Bodies the gateway can tell are broken, compressed or
    large, are refused before Triton."""
    url = start_gateway(digits_route(triton, {"1": 0, "2": 100}))
    infer = f"{url}/v2/models/digits/infer"
    strings = {
        "inputs": [{"name": "pixels", "shape": [1, 2], "datatype": "FP32", "data": ["a", "b"]}]
    }
    # a lone surrogate: Python's json reads it, Triton's does not
    surrogate = json.dumps({**strings, "id": "\ud800"}).encode()
    cases = [
        (json.dumps(strings).encode(), "Unable to parse 'data'"),
        (surrogate, "failed to parse the request JSON"),
    ]
    for content, message in cases:
        response = httpx.post(infer, content=content)
        assert response.status_code == 400 and message in response.json()["error"], response.text
        assert response.headers[HEADER] == "2"
    assert server_errors(url, "2") == 0
    assert value(url, CLIENT_ERRORS, model="digits", version="2", reason="invalid_request") == 2
    refused = [
        (json.dumps({"inputs": 5}).encode(), {}, "'inputs' must be a non-empty list"),
        (gzip.compress(b'{"inputs": ['), {"content-encoding": "gzip"}, "is not a JSON object"),
        (json.dumps(body(np.zeros((300, 64), np.float32)))[:-5].encode(), {}, "not a JSON"),
    ]
    for content, headers, message in refused:
        response = httpx.post(infer, content=content, headers=headers)
        assert response.status_code == 400 and message in response.json()["error"], response.text
    assert value(url, "modelcanary_gateway_requests_total", model="digits", version="2") == 2
    # a content coding Triton does not decode (it answers 501): refused before it
    response = httpx.post(infer, content=b"{}", headers={"content-encoding": "br"})
    assert response.status_code == 415 and "content-encoding 'br'" in response.json()["error"]
    assert (
        value(url, CLIENT_ERRORS, model="digits", version="2", reason="unsupported_encoding") == 1
    )
    # the JSON part of a binary-tensor body is checked; a raw binary body (header 0) is not
    broken_header = b'{"inputs": [' + bytes(256)
    response = httpx.post(
        infer, content=broken_header, headers={"inference-header-content-length": "12"}
    )
    assert response.status_code == 400
    raw = httpx.post(
        infer, content=X[:1].tobytes(), headers={"inference-header-content-length": "0"}
    )
    assert raw.status_code == 200, raw.text
    # compressed and valid: forwarded and answered
    compressed = gzip.compress(json.dumps(body(X)).encode())
    response = httpx.post(infer, content=compressed, headers={"content-encoding": "gzip"})
    assert response.status_code == 200
    assert server_errors(url, "2") == 0
