"""The gateway's checks of an inference request's header, case by case (the requests
against the real Triton are in tests/stack/test_gateway_hostile_requests.py)."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path

import pytest

from modelcanary.gateway.infer_checks import InferLimits, check_infer_request, model_limits

LIMITS = InferLimits(max_body_bytes=1 << 20, max_batch_size=32)
ROW = [0.5] * 64


def tensor(shape: list[int], **more: object) -> dict[str, object]:
    return {"name": "pixels", "shape": shape, "datatype": "FP32", **more}


def request(*inputs: dict[str, object], **more: object) -> bytes:
    return json.dumps({"inputs": list(inputs), **more}).encode()


def binary(header: dict[str, object], data: bytes) -> tuple[bytes, dict[str, str]]:
    text = json.dumps(header).encode()
    return text + data, {"inference-header-content-length": str(len(text))}


def refused(body: bytes, headers: dict[str, str] | None = None) -> str:
    rejection = check_infer_request(body, headers or {}, LIMITS)
    assert rejection is not None
    assert "\n" not in rejection.message
    return f"{rejection.status} {rejection.reason}: {rejection.message}"


# a table: one case per line, read across
# fmt: off
WELL_FORMED_REQUESTS = [
    (request(tensor([2, 64], data=ROW * 2)), {}),
    (request(tensor([2, 64], data=[ROW, ROW])), {}),  # nested data
    (request(tensor([0, 64], data=[])), {}),
    (request(tensor([32, 64], data=ROW * 32), outputs=[{"name": "logits",
             "parameters": {"binary_data": True}}], parameters={"priority": 1}), {}),
    (zlib.compress(request(tensor([1, 64], data=ROW))), {"content-encoding": "deflate"}),
    (gzip.compress(request(tensor([1, 64], data=ROW))), {"content-encoding": "gzip"}),
    (bytes(256), {"inference-header-content-length": "0"}),  # raw binary
    binary({"inputs": [tensor([1, 64], parameters={"binary_data_size": 256})]}, bytes(256)),
    binary({"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES",
                        "parameters": {"binary_data_size": 15}}]},
           struct.pack("<I", 3) + b"abc" + struct.pack("<I", 4) + b"defg"),
]
# fmt: on


@pytest.mark.parametrize(("body", "headers"), WELL_FORMED_REQUESTS)
def test_well_formed_requests_pass(body: bytes, headers: dict[str, str]) -> None:
    assert check_infer_request(body, headers, LIMITS) is None


def test_shapes_must_fit_the_bytes_sent() -> None:
    unknown = InferLimits(max_body_bytes=1 << 20)  # no max batch size: the sizes still hold
    rejection = check_infer_request(request(tensor([100, 64], data=ROW)), {}, unknown)
    assert rejection is not None and rejection.reason == "invalid_tensors"
    assert rejection.message.startswith("the JSON inputs' shapes hold 6400 elements; ")
    body, headers = binary(
        {"inputs": [tensor([1, 64], parameters={"binary_data_size": 256})]}, bytes(255)
    )
    assert "add up to 256 bytes; the body has 255 after the JSON header" in refused(body, headers)
    bytes_input = {
        "name": "s",
        "shape": [4],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": 15},
    }
    body, headers = binary({"inputs": [bytes_input]}, bytes(15))
    assert "shape [4] of BYTES takes at least 16 bytes; binary_data_size says 15" in refused(
        body, headers
    )
    assert "binary_data_size needs an Inference-Header-Content-Length" in refused(
        request(tensor([1, 64], parameters={"binary_data_size": 256}))
    )


# a table: one case per line, read across
# fmt: off
BROKEN_HEADERS = [
    (request(tensor([33, 64], data=ROW * 33)), {},
     "400 batch_too_large: input 'pixels': a batch of 33 exceeds the model's max batch size of 32"),
    (request(tensor([1, 64], data=ROW), outputs=[{"name": "logits", "parameters": {"a": [1]}}]),
     {}, "the parameters of output 'logits' must be an object of"),
    (request(tensor([1, 64], data=ROW), outputs=[{"id": 1}]), {},
     "'outputs' must be a list of objects with a name"),
    (request(tensor([1, True], data=ROW)), {}, "shape must be a list of at most 16"),
    (request(tensor([1] * 17, data=[1])), {}, "shape must be a list of at most 16"),
    (request(tensor([0, 1 << 40], data=[])), {},
     "input 'pixels': dimension 1099511627776 of an empty tensor exceeds the gateway's body limit"),
    (request(tensor([1, 64], data=ROW), parameters=[1]), {},
     "the request's parameters must be an object of"),
    (request(tensor([1, 64], data=ROW)) + b"{", {}, "400 invalid_json: the request body is not a JSON object"),
    (b"\xff" + request(tensor([1, 64], data=ROW)), {}, "400 invalid_json"),
    (json.dumps([{"inputs": []}]).encode(), {}, "is not a JSON object: b'[{"),
    (request(tensor([1, 64], data=ROW), deep=json.loads('{"a":' * 40 + "1" + "}" * 40)), {},
     "nests deeper than 32 levels"),
    (gzip.compress(request(tensor([1, 64], data=ROW)))[:-12], {"content-encoding": "gzip"},
     "the gzip body is cut short"),
    (b"not gzip", {"content-encoding": "gzip"}, "the gzip body does not decompress"),
    (b"{}", {"content-encoding": "br"}, "415 unsupported_encoding: content-encoding 'br'"),
    (b"{}", {"inference-header-content-length": "9" * 40}, "is not a size within the"),
]
# fmt: on


@pytest.mark.parametrize(("body", "headers", "message"), BROKEN_HEADERS)
def test_broken_headers_are_refused_in_one_line(
    body: bytes, headers: dict[str, str], message: str
) -> None:
    assert message in refused(body, headers)


def test_the_max_batch_size_comes_from_the_repository(tmp_path: Path) -> None:
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "config.pbtxt").write_text('name: "digits"\nmax_batch_size: 8\n')
    assert model_limits(tmp_path, "digits", 100) == InferLimits(100, 8)
    assert model_limits(tmp_path, "cats", 100) == InferLimits(100, None)
    assert model_limits(None, "digits", 100) == InferLimits(100, None)
