"""Replicas of a version (`modelcanary up --replicas N`, a gateway upstream given as a list):
the config's forms, the balancer, the scrape config and the command's bad input."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from modelcanary.errors import UsageError
from modelcanary.gateway.config import parse_config
from modelcanary.gateway.replicas import Replicas
from modelcanary.local.monitoring import ScrapeTarget, prometheus_config
from modelcanary.local.stack import replica_name, replica_ports
from tests.conftest import CliResult

A, B, C = "http://127.0.0.1:8000", "http://127.0.0.1:8100", "http://127.0.0.1:8200"


def route(upstreams: dict[str, object]) -> dict[str, object]:
    return {"models": {"digits": {"stable": "1", "upstreams": upstreams}}}


def test_an_upstream_is_a_url_or_a_list_of_its_replicas_urls() -> None:
    config = parse_config(route({"1": [A, B + "/"], "2": C}), "test").models["digits"]
    assert config.upstreams == {"1": A, "2": C}  # the first replica's, as before
    assert config.replica_urls("1") == [A, B] and config.replica_urls("2") == [C]


@pytest.mark.parametrize(
    ("upstreams", "problem"),
    [
        ({"1": []}, "upstream of version '1' is an empty list"),
        ({"1": [A, "ftp://x"]}, "upstream of version '1' must be an http(s) URL: 'ftp://x'"),
    ],
)
def test_a_bad_replica_list_is_named(upstreams: dict[str, object], problem: str) -> None:
    with pytest.raises(UsageError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_config(route(upstreams), "test")


def test_a_grpc_upstream_is_an_address_or_one_for_each_replica() -> None:
    data = route({"1": [A, B], "2": C})
    data["models"]["digits"]["grpc_upstreams"] = {"1": ["h:1", "h:2"], "2": "h:3"}  # type: ignore[index]
    config = parse_config(data, "test").models["digits"]
    assert config.grpc_upstreams == {"1": ["h:1", "h:2"], "2": ["h:3"]}
    for wrong, problem in (
        ({"1": ["h:1", "h:2", "h:3"]}, "lists 3 addresses for its 2 replicas"),
        ({"1": []}, "gRPC upstream of version '1' is an empty list"),
        ({"1": ["h:1", "nowhere"]}, "gRPC upstream of version '1' must be HOST:PORT: 'nowhere'"),
    ):
        data["models"]["digits"]["grpc_upstreams"] = wrong  # type: ignore[index]
        with pytest.raises(UsageError, match=problem):
            parse_config(data, "test")


def test_replicas_cannot_be_given_apart_from_upstreams() -> None:
    data = route({"1": A})
    data["models"]["digits"]["replicas"] = {"1": [B]}  # type: ignore[index]
    with pytest.raises(UsageError, match="as a list of URLs in upstreams"):
        parse_config(data, "test")


def test_requests_go_round_robin_over_the_replicas_that_are_not_down() -> None:
    replicas = Replicas([A, B, C])
    assert Counter(replicas.pick() for _ in range(30)) == {A: 10, B: 10, C: 10}
    assert replicas.set_down({B, "http://elsewhere"}) == ([B], [])
    assert Counter(replicas.pick() for _ in range(30)) == {A: 15, C: 15}
    assert not replicas.all_down
    assert replicas.set_down({A, B, C}) == ([A, C], [])
    assert replicas.all_down  # nothing better: all of them again
    assert Counter(replicas.pick() for _ in range(30)) == {A: 10, B: 10, C: 10}
    assert replicas.set_down(set()) == ([], [A, B, C])
    assert replicas.of(f"{B}/v2/models/digits/versions/1/infer") == B
    assert replicas.of("http://127.0.0.1:80001/v2") is None


def test_the_replicas_of_triton_are_one_jobs_targets() -> None:
    config = prometheus_config(
        [
            ScrapeTarget("triton", "127.0.0.1:1"),
            ScrapeTarget("gateway", "127.0.0.1:2"),
            ScrapeTarget("triton", "127.0.0.1:3"),
        ],
        [],
        "127.0.0.1:4",
        "1s",
    )
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs == {"triton": ["127.0.0.1:1", "127.0.0.1:3"], "gateway": ["127.0.0.1:2"]}


def test_replica_zero_keeps_the_single_tritons_port_names() -> None:
    assert replica_ports(0) == ("triton_http", "triton_grpc", "triton_metrics")
    assert replica_ports(1) == ("triton-1_http", "triton-1_grpc", "triton-1_metrics")
    assert [replica_name(i) for i in range(2)] == ["triton-0", "triton-1"]


@pytest.mark.parametrize("replicas", ["0", "17", "-1"])
def test_up_refuses_a_replica_count_out_of_range(
    cli: Callable[..., CliResult], tmp_path: Path, replicas: str
) -> None:
    (tmp_path / "repo").mkdir()
    paths = ("--repo", tmp_path / "repo", "--run-dir", tmp_path / "run")
    result = cli("up", *paths, "--model", "digits", "--stable", "1", "--replicas", replicas)
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert "--replicas" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "run" / "up.lock").exists()  # nothing started
