"""What the gateway checks of a gRPC inference request before any version sees it.

The same header checks as modelcanary.gateway.infer_checks, where they apply to a
ModelInferRequest (protobuf needs no parsing limits; gRPC bounds the message size): every
input has a name, a known datatype and a shape of at most MAX_DIMS non-negative
dimensions; a batch within the model's max_batch_size; no shared memory; and the shapes
hold what the request carries: a raw input's bytes are its shape's product times its
datatype's size (BYTES: at least 4 per element), a typed input's contents have as many
elements as its shape. What a version allocates is thus bounded by the message's size.
"""

from __future__ import annotations

import math
from typing import Any

from modelcanary.gateway.client_errors import BATCH_TOO_LARGE, INVALID_TENSORS, Rejection
from modelcanary.gateway.infer_checks import ELEMENT_BYTES, MAX_DIMS, InferLimits

# The InferTensorContents field each datatype's typed contents are in.
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def check_grpc_request(request: Any, limits: InferLimits) -> Rejection | None:
    """Why the ModelInferRequest must not reach the version, or None to forward it."""
    if not request.inputs:
        return Rejection(400, INVALID_TENSORS, "the request has no inputs")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        return Rejection(
            400,
            INVALID_TENSORS,
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs",
        )
    for index, tensor in enumerate(request.inputs):
        problem = _check_input(tensor, raw[index] if raw else None, limits)
        if problem is not None:
            return problem
    return None


def _check_input(tensor: Any, raw: bytes | None, limits: InferLimits) -> Rejection | None:
    where = f"input {tensor.name[:64]!r}"
    if not tensor.name:
        return Rejection(400, INVALID_TENSORS, "an input has no name")
    if tensor.datatype not in ELEMENT_BYTES:
        return Rejection(
            400,
            INVALID_TENSORS,
            f"{where}: datatype {tensor.datatype[:32]!r} is not one of {', '.join(ELEMENT_BYTES)}",
        )
    shape = list(tensor.shape)
    if len(shape) > MAX_DIMS or any(d < 0 for d in shape):
        return Rejection(
            400, INVALID_TENSORS, f"{where}: shape must be at most {MAX_DIMS} non-negative integers"
        )
    batch = limits.max_batch_size
    if batch and shape and shape[0] > batch:
        return Rejection(
            400,
            BATCH_TOO_LARGE,
            f"{where}: a batch of {shape[0]} exceeds the model's max batch size of {batch}",
        )
    if "shared_memory_region" in tensor.parameters:
        return Rejection(400, INVALID_TENSORS, f"{where}: shared memory is not offered")
    elements = math.prod(shape)
    if raw is not None:
        need = elements * ELEMENT_BYTES[tensor.datatype]
        if len(raw) != need and not (tensor.datatype == "BYTES" and len(raw) > need):
            relation = "at least " if tensor.datatype == "BYTES" else ""
            return Rejection(
                400,
                INVALID_TENSORS,
                f"{where}: shape {shape} of {tensor.datatype} takes {relation}{need} bytes; "
                f"its raw_input_contents has {len(raw)}",
            )
        return None
    if tensor.datatype not in CONTENTS:
        return Rejection(400, INVALID_TENSORS, f"{where}: {tensor.datatype} needs raw contents")
    given = len(getattr(tensor.contents, CONTENTS[tensor.datatype]))
    if given != elements:
        return Rejection(
            400,
            INVALID_TENSORS,
            f"{where}: shape {shape} holds {elements} elements; its contents have {given}",
        )
    return None
