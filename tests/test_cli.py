"""``flask thrillconnect cors …`` and ``flask thrillconnect check`` against the simulator."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest
from flask import Flask

from flask_thrillconnect import ThrillConnect

if TYPE_CHECKING:
    from redis_fixtures import RedisServer

pytest_plugins = ("redis_fixtures",)


@pytest.fixture
def make_cli(thrillconnect_sim):
    def make(**config):
        app = Flask(__name__)
        app.config.update(
            THRILLCONNECT_URL=thrillconnect_sim.url,
            THRILLCONNECT_OPERATOR_ID="thrilltech",
            THRILLCONNECT_BRAND_ID="brand1",
            THRILLCONNECT_SERVICE_TOKEN=thrillconnect_sim.service_token,
            THRILLCONNECT_TIMEOUT=(0.5, 1),
        )
        app.config.update(config)
        ThrillConnect(app)
        return app.test_cli_runner()

    return make


def test_cors_add_list_remove(make_cli):
    cli = make_cli()

    added = cli.invoke(
        args=["thrillconnect", "cors", "add", "https://*.casino.example", "--mode", "Wildcard"]
    )
    listed = cli.invoke(args=["thrillconnect", "cors", "list"])
    removed = cli.invoke(args=["thrillconnect", "cors", "remove", "https://*.casino.example"])
    after = cli.invoke(args=["thrillconnect", "cors", "list"])

    assert added.exit_code == 0, added.output
    assert "Wildcard  https://*.casino.example" in listed.output
    assert removed.exit_code == 0
    assert "https://*.casino.example" not in after.output


def test_cors_add_defaults_to_exact(make_cli):
    cli = make_cli()

    cli.invoke(args=["thrillconnect", "cors", "add", "https://casino.example"])

    assert (
        "Exact     https://casino.example"
        in cli.invoke(args=["thrillconnect", "cors", "list"]).output
    )


def test_removing_a_missing_rule_fails_clearly(make_cli):
    result = make_cli().invoke(args=["thrillconnect", "cors", "remove", "https://nowhere.example"])

    assert result.exit_code == 1
    assert "no CORS rule" in result.output


def test_a_bad_mode_is_a_usage_error(make_cli):
    result = make_cli().invoke(args=["thrillconnect", "cors", "add", "x", "--mode", "Glob"])

    assert result.exit_code == 2


def test_cors_without_a_service_token_is_a_usage_error(make_cli):
    result = make_cli(THRILLCONNECT_SERVICE_TOKEN=None).invoke(
        args=["thrillconnect", "cors", "list"]
    )

    assert result.exit_code == 2
    assert "THRILLCONNECT_SERVICE_TOKEN" in result.output


def test_check_passes_against_a_working_upstream(make_cli, thrillconnect_sim):
    result = make_cli().invoke(args=["thrillconnect", "check"])

    assert result.exit_code == 0, result.output
    assert "all checks passed" in result.output
    assert "WS service stream: connected" in result.output
    assert thrillconnect_sim.service_token not in result.output


def test_check_fails_with_a_bad_service_token(make_cli, thrillconnect_sim):
    token = thrillconnect_sim.make_service_token(secret="wrong-secret")

    result = make_cli(THRILLCONNECT_SERVICE_TOKEN=token).invoke(args=["thrillconnect", "check"])

    assert result.exit_code == 1
    assert "✗  WS service stream" in result.output
    assert token not in result.output


def test_check_fails_when_upstream_is_unreachable(make_cli):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    result = make_cli(THRILLCONNECT_URL=f"http://127.0.0.1:{port}").invoke(
        args=["thrillconnect", "check"]
    )

    assert result.exit_code == 1
    assert "✗  REST /health" in result.output


def test_check_reaches_redis_in_cluster_mode(make_cli, redis_server: RedisServer):
    result = make_cli(THRILLCONNECT_REDIS_URL=redis_server.url).invoke(
        args=["thrillconnect", "check"]
    )

    assert result.exit_code == 0, result.output
    assert "✓  Redis (cluster mode): Redis 7" in result.output


def test_check_fails_when_redis_does_not_answer(make_cli, redis_server: RedisServer):
    url = f"redis://:s3cret@127.0.0.1:{redis_server.port}/0"
    redis_server.stop()

    result = make_cli(THRILLCONNECT_REDIS_URL=url).invoke(args=["thrillconnect", "check"])

    assert result.exit_code == 1
    assert "✗  Redis (cluster mode): ClusterUnavailable" in result.output
    assert "s3cret" not in result.output


@pytest.mark.parametrize(
    "owner",
    [
        {"THRILLCONNECT_BRAND_ID": "brand9"},
        {"THRILLCONNECT_OPERATOR_ID": "nobody"},
    ],
    ids=["unknown-brand", "unknown-operator"],
)
def test_check_fails_for_an_owner_without_sources(make_cli, owner):
    result = make_cli(**owner).invoke(args=["thrillconnect", "check"])

    assert result.exit_code == 1, result.output
    assert "✗  REST /v1/thrillpots/sources" in result.output
    assert "no sources for" in result.output
    assert "THRILLCONNECT_BRAND_ID" in result.output
    assert "all checks passed" not in result.output


def test_check_says_plainly_what_no_service_token_costs(make_cli):
    result = make_cli(THRILLCONNECT_SERVICE_TOKEN=None).invoke(args=["thrillconnect", "check"])

    assert result.exit_code == 0, result.output
    assert "WS service stream: disabled: no service token" in result.output
    assert "anonymous visitors get no live updates" in result.output


@pytest.mark.parametrize("mode", ["wildcard", "WILDCARD", "Wildcard", "wIlDcArD"])
def test_cors_add_takes_the_mode_in_any_case(make_cli, mode):
    cli = make_cli()

    added = cli.invoke(
        args=["thrillconnect", "cors", "add", "https://*.casino.example", "--mode", mode]
    )

    assert added.exit_code == 0, added.output
    assert "Wildcard  https://*.casino.example" in added.output


def test_cors_add_takes_exact_in_lower_case_and_notes_a_star(make_cli):
    cli = make_cli()

    added = cli.invoke(
        args=["thrillconnect", "cors", "add", "https://*.casino.example", "--mode", "exact"]
    )

    assert added.exit_code == 0, added.output
    assert "Exact     https://*.casino.example" in added.output
    assert "stored as Exact" in added.output


def test_cors_add_infers_wildcard_from_a_star(make_cli):
    cli = make_cli()

    added = cli.invoke(args=["thrillconnect", "cors", "add", "https://*.casino.example"])

    assert added.exit_code == 0, added.output
    assert "stored as Wildcard" in added.output
    assert "Wildcard  https://*.casino.example" in added.output


def test_cors_add_asks_for_a_mode_when_a_pattern_looks_like_a_regex(make_cli, thrillconnect_sim):
    result = make_cli().invoke(
        args=["thrillconnect", "cors", "add", r"^https://.*\.casino\.example$"]
    )

    assert result.exit_code == 2
    assert "--mode regex" in result.output
    assert thrillconnect_sim.stats()["requests"]["cors"] == 0
