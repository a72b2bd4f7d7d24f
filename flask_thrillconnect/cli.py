"""``flask thrillconnect …``: manage CORS rules and check the configured credentials."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click
from flask.cli import AppGroup

from .errors import ConfigurationError, ThrillConnectError
from .health import NO_SERVICE_TOKEN, count_sources
from .models import subscribe_request_json
from .redis_connection import connect
from .state import current_state
from .upstream_ws import open_stream

thrillconnect_cli = AppGroup("thrillconnect", help="ThrillConnect jackpots: CORS rules and checks.")
cors_cli = AppGroup("cors", help="The browser origins allowed to call ThrillConnect directly.")
thrillconnect_cli.add_command(cors_cli)


def _admin_client() -> Any:
    current = current_state()
    if not current.settings.service_token:
        raise click.UsageError("CORS rules need THRILLCONNECT_SERVICE_TOKEN in the app config")
    return current.client


def _print_rules(rules: Any) -> None:
    if not rules:
        click.echo("(no CORS rules)")
    for rule in rules:
        click.echo(f"{rule.match_mode:<9} {rule.pattern}")


def _upstream_call(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ThrillConnectError as exc:
        raise click.ClickException(f"ThrillConnect: {exc}") from None


@cors_cli.command("list")
def cors_list() -> None:
    """List the CORS rules."""
    client = _admin_client()
    _print_rules(_upstream_call(client.cors_list))


@cors_cli.command("add")
@click.argument("pattern")
@click.option(
    "--mode",
    "match_mode",
    type=click.Choice(["Exact", "Wildcard", "Regex"], case_sensitive=False),
    default=None,
    help="How PATTERN matches an origin (any case). Default: Wildcard when PATTERN has a "
    "'*', else Exact.",
)
def cors_add(pattern: str, match_mode: str | None) -> None:
    """Add (or update) the rule for PATTERN."""
    if match_mode is None:
        match_mode = _inferred_mode(pattern)
    elif match_mode == "Exact" and "*" in pattern:
        click.echo(f"note: {pattern!r} is stored as Exact: its '*' matches only a '*'", err=True)
    client = _admin_client()
    rules = _upstream_call(
        lambda: client.cors_upsert([{"pattern": pattern, "match_mode": match_mode}])
    )
    click.echo(f"added {match_mode} {pattern}")
    _print_rules(rules)


_REGEX_SIGNS = frozenset("^$\\()[]{}|+?")


def _inferred_mode(pattern: str) -> str:
    """The mode of a pattern given without ``--mode``: Exact, or Wildcard when it has a ``*``
    (and a pattern that looks like a regular expression must say which it is)."""
    if "*" not in pattern:
        return "Exact"
    if ".*" in pattern or _REGEX_SIGNS.intersection(pattern):
        raise click.UsageError(
            f"{pattern!r} looks like a regular expression: give --mode regex (or wildcard)"
        )
    click.echo(f"{pattern!r} has a '*': stored as Wildcard (--mode exact keeps it Exact)")
    return "Wildcard"


@cors_cli.command("remove")
@click.argument("pattern")
def cors_remove(pattern: str) -> None:
    """Remove the rule for PATTERN."""
    client = _admin_client()
    removed, rules = _upstream_call(lambda: client.cors_remove([pattern]))
    if not removed:
        raise click.ClickException(f"no CORS rule with pattern {pattern!r}")
    click.echo(f"removed {pattern}")
    _print_rules(rules)


@thrillconnect_cli.command("check")
def check() -> None:
    """Reach ThrillConnect's REST API and stream with the configured credentials."""
    current = current_state()
    settings, client = current.settings, current.client
    click.echo(f"ThrillConnect at {settings.url} as {settings.owner_id}")
    results = [
        _check("REST /health", lambda: f"version {client.health().version}"),
        _check("REST /v1/currencies", lambda: f"{len(client.currencies().multipliers)} currencies"),
        _check(
            "REST /v1/thrillpots/sources",
            lambda: f"{count_sources(client, settings.owner_id)} sources",
        ),
    ]
    if settings.service_token:
        results.append(_check("WS service stream", lambda: _check_service_stream(current)))
        results.append(
            _check("REST /v1/cors (service token)", lambda: f"{len(client.cors_list())} rules")
        )
    else:
        # Not a failure: players still get their own streams. But say what it costs.
        click.echo(
            f"!  WS service stream: {NO_SERVICE_TOKEN}: anonymous visitors get no live "
            "updates and CORS rules cannot be managed; set THRILLCONNECT_SERVICE_TOKEN"
        )
    if settings.redis_url is not None:
        redis_url, prefix = settings.redis_url, settings.redis_prefix
        results.append(_check("Redis (cluster mode)", lambda: _check_redis(redis_url, prefix)))
    if not all(results):
        raise click.exceptions.Exit(1)
    click.echo("all checks passed")


def _check(label: str, probe: Callable[[], str]) -> bool:
    started = time.perf_counter()
    try:
        detail = probe()
    except (ThrillConnectError, ConfigurationError) as exc:
        click.echo(f"✗  {label}: {type(exc).__name__}: {exc}")
        return False
    elapsed = (time.perf_counter() - started) * 1000
    click.echo(f"✓  {label}: {detail} ({elapsed:.0f} ms)")
    return True


def _check_service_stream(current: Any) -> str:
    url = current.client.service_stream_url()
    with open_stream(url, open_timeout=current.settings.timeout[0], ping_interval=None) as stream:
        stream.send(subscribe_request_json([{"source": "thrillpots", "event_type": "*"}]))
    return "connected and subscribed"


def _check_redis(url: str, prefix: str) -> str:
    # Imported here: redis-py is there in cluster mode only.
    from .relay.cluster import ClusterUnavailable

    client = connect(url)
    try:
        info = client.info("server")
    except Exception as exc:  # redis-py's errors; the URL, and its password, stay out
        raise ClusterUnavailable(f"Redis did not answer ({type(exc).__name__})") from None
    finally:
        client.close()
    return f"Redis {info.get('redis_version', '?')}, keys under {prefix!r}"
