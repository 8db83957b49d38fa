"""Open Inference Protocol (KServe v2) JSON bodies as numpy arrays. Pure.

A request's `inputs` and a response's `outputs` are lists of `{name, shape, datatype,
data}`; `data` is flat or nested. Bodies of the binary tensor extension
(`Inference-Header-Content-Length`) and BYTES tensors are not compared: they raise
Unparseable like any malformed body, and the comparator counts and drops them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

# Triton's datatype names in the protocol (no TYPE_ prefix) and their numpy dtypes.
DATATYPES: dict[str, str] = {
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "BOOL": "bool",
}
BINARY_HEADER = "inference-header-content-length"


class Unparseable(Exception):
    """A body that holds no comparable tensors; the message says why, in one line."""


def tensors(body: bytes, headers: Mapping[str, str], key: str) -> dict[str, np.ndarray]:
    """The tensors listed under `key` ("inputs" or "outputs") of a JSON body, by name."""
    if BINARY_HEADER in headers:
        raise Unparseable("binary tensor extension bodies are not compared")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unparseable(f"not JSON: {exc}") from None
    items = document.get(key) if isinstance(document, dict) else None
    if not isinstance(items, list) or not items:
        raise Unparseable(f"no {key!r} list")
    found: dict[str, np.ndarray] = {}
    for item in items:
        name, array = _tensor(item, key)
        found[name] = array
    return found


def _tensor(item: Any, key: str) -> tuple[str, np.ndarray]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise Unparseable(f"an entry of {key!r} has no name")
    name, datatype, shape = item["name"], item.get("datatype"), item.get("shape")
    dtype = DATATYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise Unparseable(f"{key} {name!r}: datatype {datatype!r} is not compared")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise Unparseable(f"{key} {name!r}: shape {shape!r} is not a list of sizes")
    if "data" not in item:
        raise Unparseable(f"{key} {name!r} has no data")
    try:
        array = np.asarray(item["data"], dtype=dtype).reshape(shape)
    except (ValueError, TypeError) as exc:
        raise Unparseable(f"{key} {name!r}: data do not fit shape {shape}: {exc}") from None
    return name, array
