"""What the operator reads from an InferenceService for the checks before traffic: the
storageUri, and the predictor URLs KServe publishes in its status."""

from __future__ import annotations

from typing import Any

import pytest

from modelcanary.adapters.kserve_status import predictor_address, revision_urls, storage_uri

INTERNAL = "http://digits-predictor.models.svc.cluster.local"
EXTERNAL = "http://digits-predictor-models.example.com"


@pytest.mark.parametrize(
    ("predictor", "uri"),
    [
        (
            {"model": {"modelFormat": {"name": "triton"}, "storageUri": "s3://m/repo"}},
            "s3://m/repo",
        ),
        ({"triton": {"storageUri": "gs://m/repo"}}, "gs://m/repo"),
        ({"storageUri": "pvc://claim/repo"}, "pvc://claim/repo"),
        ({"model": {"modelFormat": {"name": "triton"}}}, None),
        ({"model": {"storageUri": ""}}, None),
        ({}, None),
    ],
)
def test_storage_uri(predictor: dict[str, Any], uri: str | None) -> None:
    assert storage_uri({"spec": {"predictor": predictor}}) == uri


def test_storage_uri_of_an_isvc_without_spec() -> None:
    assert storage_uri({}) is None


@pytest.mark.parametrize(
    ("status", "url"),
    [
        (
            {
                "components": {"predictor": {"address": {"url": INTERNAL}, "url": EXTERNAL}},
                "address": {"url": "http://digits.models.svc"},
                "url": "http://digits.example.com",
            },
            INTERNAL,
        ),
        (
            {"components": {"predictor": {"url": EXTERNAL}}, "address": {"url": "http://a"}},
            EXTERNAL,
        ),
        (
            {"address": {"url": "http://digits.models.svc"}, "url": "http://x"},
            "http://digits.models.svc",
        ),
        ({"url": "http://digits.example.com"}, "http://digits.example.com"),
        ({"components": {"predictor": {"address": {}}}}, None),
        ({}, None),
    ],
)
def test_predictor_address_prefers_the_predictors_internal_address(
    status: dict[str, Any], url: str | None
) -> None:
    assert predictor_address({"status": status}) == url


def serverless(traffic: list[dict[str, Any]], **predictor: Any) -> dict[str, Any]:
    return {"status": {"components": {"predictor": {"traffic": traffic, **predictor}}}}


def test_tagged_revisions_are_stable_and_canary() -> None:
    isvc = serverless(
        [
            {
                "tag": "latest",
                "revisionName": "r2",
                "percent": 0,
                "latestRevision": True,
                "url": "http://latest-digits-predictor.models.example.com",
            },
            {
                "tag": "prev",
                "revisionName": "r1",
                "percent": 100,
                "latestRevision": False,
                "url": "http://prev-digits-predictor.models.example.com",
            },
        ],
        address={"url": INTERNAL},
    )
    assert revision_urls(isvc) == (
        "http://prev-digits-predictor.models.example.com",
        "http://latest-digits-predictor.models.example.com",
    )


def test_untagged_revisions_with_urls_are_told_apart_by_latest_revision() -> None:
    isvc = serverless(
        [
            {"revisionName": "r1", "percent": 100, "latestRevision": False, "url": "http://old"},
            {"revisionName": "r2", "percent": 0, "latestRevision": True, "url": "http://new"},
        ]
    )
    assert revision_urls(isvc) == ("http://old", "http://new")


def test_without_tagged_urls_stable_is_the_predictor_and_the_canary_unknown() -> None:
    isvc = serverless(
        [{"revisionName": "r1", "percent": 100, "latestRevision": True}], address={"url": INTERNAL}
    )
    assert revision_urls(isvc) == (INTERNAL, None)
    assert revision_urls({}) == (None, None)
