"""`modelcanary gateway`'s gRPC and retry flags: wrong values are one line, nothing starts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult

Cli = Callable[..., CliResult]
ROUTE = ("gateway", "--model", "digits", "--stable", "1", "--upstream", "1=http://127.0.0.1:1")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--grpc-upstream", "1"), "--grpc-upstream '1' is not VERSION=HOST:PORT"),
        (("--grpc-upstream", "1=nowhere"), "gRPC upstream of version '1' must be HOST:PORT"),
        (("--grpc-listen", "8081"), "--grpc-listen '8081' is not HOST:PORT"),
        (("--upstream", "2"), "--upstream '2' is not VERSION=URL"),
    ],
)
def test_wrong_grpc_flags_are_named(
    cli: Cli, tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    token = ("--admin-token-file", str(tmp_path / "token"))
    result = cli(*ROUTE, *flags, *token)
    assert result.code != 0 and message in result.err, result.err
    assert "Traceback" not in result.err


def test_a_config_with_a_misspelt_retry_field_is_refused(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "models: {digits: {stable: '1', upstreams: {'1': 'http://127.0.0.1:1'}}}\n"
        "retry: {ratio: 2, windows: 10}\n"
    )
    result = cli("gateway", "--config", config, "--admin-token-file", tmp_path / "token")
    assert result.code != 0
    assert "retry.ratio" in result.err and "retry.windows" in result.err, result.err
