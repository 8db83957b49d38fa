"""Ask one served version of a model for its answers: Open Inference Protocol pinned to
the version (`/v2/models/{m}/versions/{v}/infer`, so it works on the gateway and on a
predictor alike), in batches the model accepts, marked as a probe so the gateway does not
count it as user traffic. For the checks before traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import httpx
import numpy as np

from modelcanary.adapters.repo_reader import CheckUnavailable
from modelcanary.errors import one_line
from modelcanary.metrics_contract import PROBE_HEADER
from modelcanary.modelrepo.oip import infer_body


def served_answers(
    http: httpx.Client,
    url: str,
    model: str,
    version: str,
    inputs: Mapping[str, np.ndarray],
    max_batch_size: int,
    outputs: Iterable[str],
    probe: str,
) -> dict[str, np.ndarray]:
    """Each named output for every sample (first axis of `inputs`), in sample order.

    `max_batch_size` 0 is an unbatched model: one sample per request, without its batch
    axis. CheckUnavailable when the version cannot be asked or gives no such output."""
    endpoint = f"{url.rstrip('/')}/v2/models/{model}/versions/{version}/infer"
    wanted = tuple(outputs)
    count = next(iter(inputs.values())).shape[0]
    step = max_batch_size or 1
    answers: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
    for start in range(0, count, step):
        chunk = {n: a[start : start + step] for n, a in inputs.items()}
        if not max_batch_size:
            chunk = {n: a[start] for n, a in inputs.items()}
        got = _infer(http, endpoint, chunk, probe)
        for name in wanted:
            if name not in got:
                raise CheckUnavailable(f"{endpoint} gave no output {name!r}")
            answers[name].append(got[name] if max_batch_size else got[name][np.newaxis])
    return {name: np.concatenate(parts) for name, parts in answers.items()}


def _infer(
    http: httpx.Client, endpoint: str, chunk: dict[str, np.ndarray], probe: str
) -> dict[str, np.ndarray]:
    try:
        response = http.post(endpoint, json=infer_body(chunk), headers={PROBE_HEADER: probe})
    except httpx.HTTPError as exc:
        raise CheckUnavailable(f"{endpoint} is unreachable: {one_line(exc)}") from None
    if response.status_code != 200:
        raise CheckUnavailable(f"{endpoint} answered {response.status_code}: {response.text[:200]}")
    try:
        return {
            o["name"]: np.asarray(o["data"]).reshape(o["shape"])
            for o in response.json().get("outputs", [])
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckUnavailable(f"{endpoint} gave an unreadable answer: {one_line(exc)}") from None
