"""Requests the client broke: a client error of the version they were routed to, never
one of its errors.

A version's error ratio judges it, so it counts only failures that are the version's
fault. The gateway does not forward an inference request it can tell is broken (cut short
by a disconnect, too large, or failing the header checks of
modelcanary.gateway.infer_checks), and it recognizes the version's answers that blame the
request. Triton 2.51 answers 500 to a body it cannot parse, JSON or OIP structure (it
reports its HTTP frontend's parse errors as internal errors;
triton-inference-server/server#8762), while its own request checks (shape, data type,
input names) answer 400. Both become 400 here.

Each is counted in `modelcanary_gateway_client_errors_total{model, version, reason}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from modelcanary.http.upstream import UpstreamResponse

# The `reason` label. Not forwarded:
INVALID_JSON = "invalid_json"  # the body, or its JSON part, is not a JSON object: 400
UNSUPPORTED_ENCODING = "unsupported_encoding"  # a content coding Triton does not decode: 415
BODY_TOO_LARGE = "body_too_large"  # 413
INVALID_TENSORS = "invalid_tensors"  # inputs whose shapes, datatypes or sizes do not add up
BATCH_TOO_LARGE = "batch_too_large"  # a batch above the model's max_batch_size
CLIENT_GONE = "client_gone"  # the client left before its whole body arrived: no answer
# Forwarded, and the version answered that the request is invalid: 400.
INVALID_REQUEST = "invalid_request"

# How Triton's error messages for requests it could not parse begin (JSON, then OIP fields).
TRITON_PARSE_ERRORS = ("failed to parse the request JSON buffer", "Unable to parse '")


@dataclass(frozen=True)
class Rejection:
    """An inference request the gateway answers itself instead of forwarding it."""

    status: int
    reason: str
    message: str


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
