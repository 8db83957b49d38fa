"""gRPC tensors as the JSON the shadow comparator reads: raw and typed contents."""

from __future__ import annotations

import json

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from modelcanary.gateway.grpc_json import request_json, response_json
from modelcanary.shadow.payload import tensors


def test_raw_and_typed_inputs_read_as_the_http_body_would() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    request = pb.ModelInferRequest(model_name="digits")
    request.inputs.add(name="pixels", datatype="FP32", shape=[2, 3])
    request.raw_input_contents.append(x.tobytes())
    body = request_json(request)
    assert body is not None
    np.testing.assert_array_equal(tensors(body, {}, "inputs")["pixels"], x)
    typed = pb.ModelInferRequest(model_name="digits")
    tensor = typed.inputs.add(name="ids", datatype="INT64", shape=[3])
    tensor.contents.int64_contents.extend([4, 5, 6])
    assert json.loads(request_json(typed) or b"")["inputs"][0]["data"] == [4, 5, 6]


def test_outputs_and_what_cannot_be_converted() -> None:
    logits = np.linspace(-1, 1, 10, dtype=np.float32).reshape(1, 10)
    response = pb.ModelInferResponse(model_name="digits", model_version="1")
    response.outputs.add(name="logits", datatype="FP32", shape=[1, 10])
    response.raw_output_contents.append(logits.tobytes())
    answer = response_json(response)
    assert answer is not None
    np.testing.assert_array_equal(tensors(answer, {}, "outputs")["logits"], logits)
    text = pb.ModelInferRequest(model_name="digits")
    text.inputs.add(name="text", datatype="BYTES", shape=[1])
    text.raw_input_contents.append(b"\x02\0\0\0hi")
    assert request_json(text) is None
