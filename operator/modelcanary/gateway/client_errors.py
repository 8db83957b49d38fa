"""Requests the client broke: a client error of the version they were routed to, never
one of its errors.

A version's error ratio judges it, so it counts only failures that are the version's
fault. The gateway does not forward an inference request it can tell is broken (not JSON,
cut short by a disconnect, too large, in a content coding Triton does not decode), and it
recognizes the version's answers that blame the request. Triton 2.51 answers 500 to a
body it cannot parse, JSON or OIP structure (it reports its HTTP frontend's parse errors
as internal errors; triton-inference-server/server#8762), while its own request checks
(shape, data type, input names) answer 400. Both become 400 here.

Each is counted in `modelcanary_gateway_client_errors_total{model, version, reason}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from modelcanary.gateway.upstream import UpstreamResponse

# The `reason` label. Not forwarded:
INVALID_JSON = "invalid_json"  # the body, or its JSON part, is not a JSON object: 400
UNSUPPORTED_ENCODING = "unsupported_encoding"  # a content coding Triton does not decode: 415
BODY_TOO_LARGE = "body_too_large"  # 413
CLIENT_GONE = "client_gone"  # the client left before its whole body arrived: no answer
# Forwarded, and the version answered that the request is invalid: 400.
INVALID_REQUEST = "invalid_request"

# Content codings Triton decodes; it answers 501 "Unsupported compression type" to others.
DECODED_ENCODINGS = ("identity", "gzip", "deflate")
# How Triton's error messages for requests it could not parse begin (JSON, then OIP fields).
TRITON_PARSE_ERRORS = ("failed to parse the request JSON buffer", "Unable to parse '")
# JSON up to this size is parsed here (about 15 µs a KiB, on the event loop every request
# shares); larger JSON is left to the version, whose parse errors blames_request reads.
JSON_CHECK_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class Rejection:
    """An inference request the gateway answers itself instead of forwarding it."""

    status: int
    reason: str
    message: str


def check_infer_body(body: bytes, headers: Mapping[str, str]) -> Rejection | None:
    """Why an inference body must not reach the version, or None to forward it.

    Only what is cheap and certain: the JSON (the whole body, or the first
    Inference-Header-Content-Length bytes of a binary-tensor body) must parse to an
    object. Compressed bodies, raw binary ones (header 0) and JSON over
    JSON_CHECK_MAX_BYTES are left to the version, whose answer `blames_request` reads."""
    encoding = headers.get("content-encoding")
    if encoding is not None and encoding not in DECODED_ENCODINGS:
        return Rejection(
            415,
            UNSUPPORTED_ENCODING,
            f"content-encoding {encoding!r} is not supported; use {', '.join(DECODED_ENCODINGS)}",
        )
    if encoding in ("gzip", "deflate"):
        return None
    declared = headers.get("inference-header-content-length")
    if declared is None:
        part, where = body, "the request body"
    elif declared.isdigit() and 0 < int(declared) <= len(body):
        part, where = body[: int(declared)], f"the first {declared} bytes of the request body"
    else:
        return None  # raw binary, or a header the version answers 400 to
    if len(part) > JSON_CHECK_MAX_BYTES:
        return None
    try:
        document = json.loads(part)
    except (ValueError, RecursionError) as exc:  # also a body that is not UTF-8
        return Rejection(400, INVALID_JSON, f"{where} is not a JSON object: {exc}")
    if not isinstance(document, dict):
        return Rejection(400, INVALID_JSON, f"{where} is not a JSON object: {part[:40]!r}")
    return None


def blames_request(response: UpstreamResponse) -> bool:
    """Whether a version's answer says the request is at fault: a 400, or Triton's 500
    to a request it could not parse."""
    if response.status == 400:
        return True
    if response.status != 500:
        return False
    try:
        document = json.loads(response.body)
    except ValueError:
        return False
    message = document.get("error") if isinstance(document, dict) else None
    return isinstance(message, str) and message.startswith(TRITON_PARSE_ERRORS)
