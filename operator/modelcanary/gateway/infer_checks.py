"""What the gateway checks of an inference request before any version sees it.

Triton 2.51 trusts the request header more than it should: JSON nested 400,000 deep
overflows its parser's stack (SIGSEGV, every version on that server gone); a shape of
[2^40, 64] makes it allocate for it (std::bad_alloc, abort), or wraps around its batch
size into a batch the backend then fails, with every other request in it. So the gateway
reads the whole header (the JSON body, or the first Inference-Header-Content-Length bytes
of a binary-tensor body; a gzip or deflate body is decompressed, up to the body limit) and
answers 400 with one line, instead of forwarding, when:

- the JSON does not parse (as UTF-8), repeats a key, or nests deeper than MAX_DEPTH;
- an input lacks a name, a known datatype, a shape of non-negative integers or its data,
  or has parameters that are not flat (or name a shared-memory region);
- an input's batch (its first dimension) exceeds the model's max_batch_size;
- the shapes hold more than the body carries: a binary input's binary_data_size is not
  its shape's product times its datatype's size, the binary sizes do not add up to the
  body after the header, or the JSON inputs' shapes hold more elements than their JSON
  can encode (an element takes at least two bytes: a digit and a comma).

What a version allocates for a request is thus bounded by the request's own size, itself
bounded by max_body_bytes. Parsing costs about 12 ms per MiB of JSON on the event loop.
"""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcanary.errors import UsageError
from modelcanary.gateway.client_errors import (
    BATCH_TOO_LARGE,
    BODY_TOO_LARGE,
    INVALID_JSON,
    INVALID_TENSORS,
    UNSUPPORTED_ENCODING,
    Rejection,
)

MAX_DEPTH = 32  # an OIP header nests 3 levels, plus one per dimension of nested data
MAX_DIMS = 16
# Triton's datatypes and the bytes of one element (BYTES: a 4-byte length, then the bytes).
ELEMENT_BYTES = {
    "BOOL": 1,
    "INT8": 1,
    "UINT8": 1,
    "INT16": 2,
    "UINT16": 2,
    "FP16": 2,
    "BF16": 2,
    "INT32": 4,
    "UINT32": 4,
    "FP32": 4,
    "INT64": 8,
    "UINT64": 8,
    "FP64": 8,
    "BYTES": 4,
}
# Content codings Triton decodes; it answers 501 "Unsupported compression type" to others.
DECODED_ENCODINGS = ("identity", "gzip", "deflate")
_WBITS = {"gzip": 31, "deflate": 15}


@dataclass(frozen=True)
class InferLimits:
    """What one model's requests may be: the body limit, and its max batch size (None:
    unknown; 0: the model does not batch)."""

    max_body_bytes: int
    max_batch_size: int | None = None


class _Refused(Exception):
    """One problem of the request, in one line."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.rejection = Rejection(status, reason, message)


def model_limits(repository: Path | None, model: str, max_body_bytes: int) -> InferLimits:
    """A model's limits; its max batch size from the repository's config.pbtxt if there is
    a repository holding the model."""
    if repository is None:
        return InferLimits(max_body_bytes)
    # here, not above: the request guard runs where tritonclient is not (the operator's image)
    from modelcanary.modelrepo.repository import ModelRepository

    try:
        config = ModelRepository(repository).read_config(model)
    except UsageError:
        config = None
    return InferLimits(max_body_bytes, None if config is None else config.max_batch_size)


def check_infer_request(
    body: bytes, headers: Mapping[str, str], limits: InferLimits
) -> Rejection | None:
    """Why the request must not reach the version, or None to forward it."""
    try:
        _check(body, headers, limits)
    except _Refused as refused:
        return refused.rejection
    return None


def _check(body: bytes, headers: Mapping[str, str], limits: InferLimits) -> None:
    encoding = headers.get("content-encoding", "identity")
    if encoding not in DECODED_ENCODINGS:
        raise _Refused(
            UNSUPPORTED_ENCODING,
            f"content-encoding {encoding!r} is not supported; use {', '.join(DECODED_ENCODINGS)}",
            415,
        )
    if encoding in _WBITS:
        body = _decompress(body, encoding, limits.max_body_bytes)
    declared = headers.get("inference-header-content-length")
    if declared is None:
        header, binary, where = body, None, "the request body"
    elif (
        declared.isascii()
        and declared.isdigit()
        and len(declared) < 16
        and int(declared) <= len(body)
    ):
        if int(declared) == 0:
            return  # raw binary: the one input's data; its shape is the model's
        size = int(declared)
        header, binary = body[:size], len(body) - size
        where = f"the first {size} bytes of the request body"
    else:
        raise _Refused(
            INVALID_TENSORS,
            f"Inference-Header-Content-Length {declared!r} is not a size within the "
            f"{len(body)}-byte body",
        )
    document = _parse(header, where)
    _check_header(document, len(header), binary, limits)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _Refused(INVALID_JSON, f"the {encoding} body does not decompress: {exc}") from None
    if len(plain) > limit:
        raise _Refused(
            BODY_TOO_LARGE,
            f"the {encoding} body decompresses to more than the gateway's limit of {limit} bytes",
            413,
        )
    if not inflater.eof:
        raise _Refused(INVALID_JSON, f"the {encoding} body is cut short")
    return plain


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object without repeated keys: Triton reads a repeated key's first value, Python
    its last, so the gateway would check another request than Triton runs."""
    found = dict(pairs)
    if len(found) != len(pairs):
        repeated = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise ValueError(f"key {repeated[:64]!r} appears twice in one object")
    return found


def _parse(part: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(part.decode("utf-8"), object_pairs_hook=_unique_keys)
    except RecursionError:
        raise _Refused(INVALID_JSON, f"{where} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # also a body that is not UTF-8
        raise _Refused(INVALID_JSON, f"{where} is not a JSON object: {exc}") from None
    if not isinstance(document, dict):
        raise _Refused(INVALID_JSON, f"{where} is not a JSON object: {part[:40]!r}")
    if part.count(b"[") + part.count(b"{") > MAX_DEPTH and _deeper_than(document, MAX_DEPTH):
        raise _Refused(INVALID_JSON, f"{where} nests deeper than {MAX_DEPTH} levels")
    return document


def _deeper_than(document: object, limit: int) -> bool:
    """Whether containers nest more than `limit` deep; the elements of a list are typed in
    one C-speed pass, so a long flat list costs little."""
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = list(value.values()) if isinstance(value, dict) else value
        assert isinstance(children, list)
        kinds = set(map(type, children))
        if list in kinds or dict in kinds:
            stack.extend((c, depth + 1) for c in children if isinstance(c, list | dict))
    return False


def _flat(parameters: object, where: str) -> dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict) or not all(
        isinstance(v, str | int | float | bool) for v in parameters.values()
    ):
        raise _Refused(INVALID_TENSORS, f"{where} must be an object of strings, numbers, booleans")
    return parameters


def _check_header(
    document: dict[str, Any], header_bytes: int, binary: int | None, limits: InferLimits
) -> None:
    _flat(document.get("parameters"), "the request's parameters")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _Refused(INVALID_TENSORS, "'inputs' must be a non-empty list of tensors")
    json_elements = binary_total = 0
    for index, tensor in enumerate(inputs):
        elements, binary_size = _check_input(index, tensor, binary is not None, limits)
        if binary_size is None:
            json_elements += elements
        else:
            binary_total += binary_size
    most = (header_bytes + len(inputs)) // 2
    if json_elements > most:
        raise _Refused(
            INVALID_TENSORS,
            f"the JSON inputs' shapes hold {json_elements} elements; "
            f"{header_bytes} bytes of JSON hold at most {most}",
        )
    if binary is not None and binary_total != binary:
        raise _Refused(
            INVALID_TENSORS,
            f"the inputs' binary_data_size add up to {binary_total} bytes; "
            f"the body has {binary} after the JSON header",
        )
    outputs = document.get("outputs", [])
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise _Refused(INVALID_TENSORS, "'outputs' must be a list of objects with a name")
    for output in outputs:
        _flat(output.get("parameters"), f"the parameters of output {output['name'][:64]!r}")


def _check_input(
    index: int, tensor: object, binary_body: bool, limits: InferLimits
) -> tuple[int, int | None]:
    """One input's element count, and its binary size (None: its data is JSON)."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise _Refused(INVALID_TENSORS, f"inputs[{index}] is not a tensor with a name")
    where = f"input {tensor['name'][:64]!r}"
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in ELEMENT_BYTES:
        raise _Refused(
            INVALID_TENSORS,
            f"{where}: datatype {str(datatype)[:32]!r} is not one of {', '.join(ELEMENT_BYTES)}",
        )
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise _Refused(
            INVALID_TENSORS,
            f"{where}: shape must be a list of at most {MAX_DIMS} non-negative integers",
        )
    batch = limits.max_batch_size
    if batch and shape and shape[0] > batch:
        raise _Refused(
            BATCH_TOO_LARGE,
            f"{where}: a batch of {shape[0]} exceeds the model's max batch size of {batch}",
        )
    elements = math.prod(shape)
    widest = max(shape, default=0)
    if elements == 0 and widest > limits.max_body_bytes:  # the bytes do not bound it
        raise _Refused(
            INVALID_TENSORS,
            f"{where}: dimension {widest} of an empty tensor exceeds the gateway's body "
            f"limit of {limits.max_body_bytes} bytes",
        )
    parameters = _flat(tensor.get("parameters"), f"the parameters of {where}")
    if "shared_memory_region" in parameters:
        raise _Refused(INVALID_TENSORS, f"{where}: shared memory is not offered by the gateway")
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in tensor:
            raise _Refused(INVALID_TENSORS, f"{where} has no data (nor a binary_data_size)")
        return elements, None
    if not binary_body or "data" in tensor:
        raise _Refused(
            INVALID_TENSORS,
            f"{where}: binary_data_size needs an Inference-Header-Content-Length header "
            "and no 'data'",
        )
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _Refused(INVALID_TENSORS, f"{where}: binary_data_size must be a number of bytes")
    need = elements * ELEMENT_BYTES[datatype]
    if size != need and not (datatype == "BYTES" and size > need):
        relation = "at least " if datatype == "BYTES" else ""
        raise _Refused(
            INVALID_TENSORS,
            f"{where}: shape {shape} of {datatype} takes {relation}{need} bytes; "
            f"binary_data_size says {size}",
        )
    return elements, size
