"""Triton's inference statistics through the gateway: read-only, per version or per model."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.gateway import AUTH, HEADER, StartGateway, X, body, digits_route

pytestmark = pytest.mark.slow


def inference_count(stats: dict[str, Any], version: str) -> int:
    """The successful inferences Triton counted for one version in a stats document."""
    (entry,) = [s for s in stats["model_stats"] if s["version"] == version]
    return int(entry["inference_stats"]["success"]["count"])


def test_stats_pass_through_per_version_and_per_model(
    triton: str, start_gateway: StartGateway
) -> None:
    url = start_gateway(digits_route(triton, {"1": 50, "2": 50}))
    before = {
        v: inference_count(httpx.get(f"{url}/v2/models/digits/versions/{v}/stats").json(), v)
        for v in ("1", "2")
    }
    for version in ("1", "2", "2"):
        response = httpx.post(
            f"{url}/v2/models/digits/infer", json=body(X), headers={HEADER: version}
        )
        assert response.status_code == 200
    one = httpx.get(f"{url}/v2/models/digits/versions/2/stats")
    assert one.status_code == 200 and one.headers["content-type"].startswith("application/json")
    assert [s["version"] for s in one.json()["model_stats"]] == ["2"]
    assert inference_count(one.json(), "2") == before["2"] + 2
    # unversioned: from stable's upstream, which lists every version it serves
    every = httpx.get(f"{url}/v2/models/digits/stats").json()
    assert {s["version"] for s in every["model_stats"]} == {"1", "2"}
    assert inference_count(every, "1") == before["1"] + 1
    # stats read nothing but statistics: no other method, no unknown version or model
    assert httpx.post(f"{url}/v2/models/digits/stats", json={}).status_code == 404
    missing = httpx.get(f"{url}/v2/models/digits/versions/9/stats")
    assert missing.status_code == 404 and "has no version '9'" in missing.json()["error"]
    assert httpx.get(f"{url}/v2/models/cats/stats").status_code == 404
    # Triton's config (a control API) is not forwarded; without a repository the gateway
    # has no public config of its own to show
    for path in ("/v2/models/digits/config", "/v2/models/digits/versions/2/config"):
        refused = httpx.get(url + path, headers=AUTH)
        assert refused.status_code == 404 and "control API" in refused.json()["error"]
