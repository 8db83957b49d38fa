"""KServe v2 gRPC tensors as the Open Inference Protocol's JSON, for the shadow comparator
(which compares JSON bodies): a ModelInferRequest's inputs and a ModelInferResponse's
outputs, raw or typed contents. Pure. BYTES tensors are not converted (None)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from modelcanary.gateway.grpc_checks import CONTENTS
from modelcanary.shadow.payload import DATATYPES


def request_json(request: Any) -> bytes | None:
    """The request as a JSON inference body, or None when a tensor cannot be converted."""
    inputs = _tensors(request.inputs, request.raw_input_contents)
    return None if inputs is None else json.dumps({"inputs": inputs}).encode()


def response_json(response: Any) -> bytes | None:
    """The response as a JSON inference answer, or None when a tensor cannot be converted."""
    outputs = _tensors(response.outputs, response.raw_output_contents)
    if outputs is None:
        return None
    document = {"model_name": response.model_name, "model_version": response.model_version}
    return json.dumps({**document, "outputs": outputs}).encode()


def _tensors(tensors: Any, raw: Any) -> list[dict[str, Any]] | None:
    converted = []
    for index, tensor in enumerate(tensors):
        dtype = DATATYPES.get(tensor.datatype)
        if dtype is None or (not raw and tensor.datatype not in CONTENTS):
            return None
        if raw:
            data = np.frombuffer(raw[index], dtype=dtype).tolist()
        else:
            data = list(getattr(tensor.contents, CONTENTS[tensor.datatype]))
        converted.append(
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": list(tensor.shape),
                "data": data,
            }
        )
    return converted
