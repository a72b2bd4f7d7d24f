"""The shared cache across processes: the portal under gunicorn with four workers, two portals
("processes") in this one over the same Redis, and the wiring of ``THRILLCONNECT_REDIS_URL``.

A herd of cold requests for one ticker, spread over the workers while the simulator is slowed
down, costs one upstream request with ``THRILLCONNECT_REDIS_URL`` set, and one per worker
without it (which shows the herd does reach several workers, so the first test can fail).
Gunicorn imports :func:`create_app` from this module (``--pythonpath tests``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
import requests
from flask import Flask, Response
from gunicorn_fixtures import gunicorn_portal as launch_gunicorn
from portal_fixtures import Browser, LiveServer

from flask_thrillconnect import ThrillConnect
from flask_thrillconnect.cache import MemoryStorage, ResponseCache, make_entry, make_storage
from flask_thrillconnect.cache.near_cache import NEAR_TTL
from flask_thrillconnect.cache.redis_storage import RedisStorage
from flask_thrillconnect.cache.shared_storage import SharedStorage
from flask_thrillconnect.config import Settings, read_settings
from flask_thrillconnect.redis_connection import RedisKeys, connect

if TYPE_CHECKING:
    from redis_fixtures import RedisServer

pytest_plugins = ("redis_fixtures",)

WORKERS = 4
# Fewer threads per worker than a browser's burst of misses (upstream_guard.MISS_BURST): the
# herd comes from one address, and the guard is not what this test is about.
THREADS = 16
HERD = 400
#: Upstream answers this late during the herd, so every worker has requests waiting on it.
UPSTREAM_DELAY = 1.0
STARTUP_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0


def create_app() -> Flask:
    """The portal each gunicorn worker serves, configured from the environment."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="cluster-test",
        THRILLCONNECT_URL=os.environ["THRILLCONNECT_URL"],
        THRILLCONNECT_OPERATOR_ID="thrilltech",
        THRILLCONNECT_BRAND_ID="brand1",
        THRILLCONNECT_REDIS_URL=os.environ.get("THRILLCONNECT_REDIS_URL") or None,
        # Long enough that no refresh runs during the test: only the cold fetch is counted.
        THRILLCONNECT_CACHE_TTL={"ticker": 60, "sources": 60},
    )
    tc = ThrillConnect(app)

    @app.get("/ping")
    def ping() -> dict[str, bool]:
        # The brand's sources (which ids exist) are cached in every worker before the herd.
        tc.sources()
        time.sleep(0.05)  # concurrent pings then reach several workers
        return {"ok": True}

    @app.after_request
    def name_the_worker(response: Response) -> Response:
        response.headers["X-Worker"] = str(os.getpid())
        return response

    return app


def _ping_workers(url: str) -> set[str]:
    """The workers that answered a burst of concurrent pings."""

    def ping(_: int) -> str:
        try:
            return requests.get(f"{url}/ping", timeout=2).headers.get("X-Worker", "")
        except requests.RequestException:
            return ""

    with ThreadPoolExecutor(max_workers=16) as pool:
        return set(pool.map(ping, range(32))) - {""}


@contextmanager
def gunicorn_portal(sim: Any, redis_url: str | None, tmp_path: Path) -> Iterator[str]:
    """The portal under gunicorn (gthread, four workers) on 127.0.0.1, every worker booted
    and warm."""
    env = {"THRILLCONNECT_URL": sim.url, "THRILLCONNECT_REDIS_URL": redis_url or ""}
    with launch_gunicorn(
        "gthread",
        env,
        app="test_cluster_cache:create_app()",
        browsers=THREADS - 16,  # worker_args gives threads = browsers + 16
        extra_args=["--workers", str(WORKERS)],
        tmp_dir=tmp_path,
        ready_path="/ping",
    ) as portal:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        seen: set[str] = set()
        while len(seen) < WORKERS:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(seen)} of {WORKERS} workers answered")
            seen |= _ping_workers(portal.url)
        yield portal.url


def cold_herd(url: str, sim: Any) -> tuple[int, list[int], set[str]]:
    """HERD concurrent requests for one cold ticker while upstream is slow: the upstream ticker
    requests they cost, their statuses and the workers that answered them."""
    ticker = f"{url}/thrillconnect/v1/thrillpots/instances/{sim.instance_ids['progressive']}/ticker"
    before = sim.stats()["requests"]["ticker"]
    barrier = threading.Barrier(HERD, timeout=REQUEST_TIMEOUT)

    def one(_: int) -> tuple[int, str]:
        barrier.wait()
        response = requests.get(ticker, timeout=REQUEST_TIMEOUT)
        return response.status_code, response.headers.get("X-Worker", "")

    sim.faults(rest={"delay": UPSTREAM_DELAY})
    try:
        with ThreadPoolExecutor(max_workers=HERD) as pool:
            answers = list(pool.map(one, range(HERD)))
    finally:
        sim.faults()
    upstream = sim.stats()["requests"]["ticker"] - before
    return upstream, [status for status, _ in answers], {worker for _, worker in answers}


def test_a_cold_herd_over_four_workers_costs_one_upstream_request_with_redis(
    thrillconnect_sim: Any, redis_server: RedisServer, tmp_path: Path
) -> None:
    with gunicorn_portal(thrillconnect_sim, redis_server.url, tmp_path) as url:
        upstream, statuses, workers = cold_herd(url, thrillconnect_sim)

    assert statuses == [200] * HERD
    assert len(workers) >= 2, workers  # the herd was spread over the workers
    assert upstream == 1, (upstream, workers)


def test_without_redis_the_same_herd_costs_a_request_per_worker(
    thrillconnect_sim: Any, tmp_path: Path
) -> None:
    with gunicorn_portal(thrillconnect_sim, None, tmp_path) as url:
        upstream, statuses, workers = cold_herd(url, thrillconnect_sim)

    assert statuses == [200] * HERD
    assert len(workers) >= 2, workers
    assert 1 < upstream <= WORKERS, (upstream, workers)


def test_two_portals_on_one_redis_share_a_players_answers_and_their_invalidation(
    thrillconnect_sim: Any,
    redis_server: RedisServer,
    make_live_portal: Callable[..., LiveServer],
) -> None:
    worker_a = make_live_portal(THRILLCONNECT_REDIS_URL=redis_server.url)
    worker_b = make_live_portal(THRILLCONNECT_REDIS_URL=redis_server.url)
    path = "/v1/thrillpots/instances/source/egyptian-gold"
    with Browser(worker_a.url) as on_a, Browser(worker_b.url) as on_b:
        on_a.login("player_00001")
        on_b.login("player_00001")
        first = on_a.api("GET", path)
        shared = on_b.api("GET", path)
        assert (first.headers["X-Cache"], shared.headers["X-Cache"]) == ("MISS", "HIT")
        assert first.headers["ETag"] == shared.headers["ETag"]
        assert shared.headers["Cache-Control"] == "private, no-store"

        # An opt-in on A starts a new generation of the player's keys; B follows it within
        # the near cache's lifetime, and nothing scans Redis's keys.
        worker_a.app.extensions["thrillconnect"].service.forget_player("player_00001")
        forgotten = time.monotonic()
        deadline = forgotten + NEAR_TTL + 1.0
        while on_b.api("GET", path).headers["X-Cache"] != "MISS":
            assert time.monotonic() < deadline, "B kept the old generation"
            time.sleep(0.02)

    assert time.monotonic() - forgotten < NEAR_TTL + 0.5
    assert thrillconnect_sim.stats()["requests"]["jackpot"] == 2
    commands = redis.Redis.from_url(redis_server.url).info("commandstats")
    assert not {"cmdstat_keys", "cmdstat_scan"} & set(commands)
    stats = worker_b.app.extensions["thrillconnect"].service.cache_stats()
    assert stats["mode"] == "redis"


# -- configuration and secrets -----------------------------------------------------------------


def test_no_secret_of_the_redis_url_reaches_a_log_line_or_an_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_thrillconnect")
    # A loopback port bound (nobody else takes it) but not listening: connects are refused.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        client = connect(f"redis://portal:s3cret-pass@127.0.0.1:{port}/0")
        cache = ResponseCache(SharedStorage(RedisStorage(client, RedisKeys("tc:"))))
        result = cache.lookup("s:currencies", lambda: b"{}", ttl=5)

    assert result.status == "MISS"
    assert cache.stats()["mode"] == "fallback"
    assert "s3cret" not in caplog.text
    assert "s3cret" not in repr(cache.stats())


def test_make_storage_shares_through_redis_only_when_a_url_is_configured(
    redis_server: RedisServer,
) -> None:
    def settings_of(**config: Any) -> Settings:
        app = Flask(__name__)
        app.config.update(
            THRILLCONNECT_URL="http://127.0.0.1:9/",
            THRILLCONNECT_OPERATOR_ID="thrilltech",
            THRILLCONNECT_BRAND_ID="brand1",
            **config,
        )
        return read_settings(app)

    assert isinstance(make_storage(settings_of()), MemoryStorage)
    shared = make_storage(settings_of(THRILLCONNECT_REDIS_URL=redis_server.url))
    assert isinstance(shared, SharedStorage)
    shared.set("s:currencies", make_entry(b"{}", now=time.time(), ttl=5, stale_ttl=5))
    client = redis.Redis.from_url(redis_server.url)
    assert client.exists("thrillconnect:thrilltech:brand1:cache:entry:s:currencies")


def test_health_says_degraded_while_redis_is_down_and_ok_when_it_is_back(
    make_live_portal: Callable[..., LiveServer], redis_server: RedisServer
) -> None:
    portal = make_live_portal(THRILLCONNECT_REDIS_URL=redis_server.url)
    with Browser(portal.url) as browser:
        browser.get("/admin/login")  # /health/detail is for admins
        assert browser.api("GET", "/v1/currencies").status_code == 200
        assert browser.api("GET", "/health").json()["status"] == "ok"
        redis_server.stop()
        try:
            # Served all the same, from the process's own cache.
            assert browser.api("GET", "/v1/thrillpots/sources").status_code == 200
            down = browser.api("GET", "/health/detail").json()
        finally:
            redis_server.start()
        deadline = time.monotonic() + 15
        while browser.api("GET", "/health/detail").json()["cache"]["mode"] != "redis":
            assert time.monotonic() < deadline, "the cache did not return to Redis"
            browser.api("GET", "/v1/thrillpots/sources")
            time.sleep(0.2)

    assert down["status"] == "degraded"
    assert down["cache"]["mode"] == "fallback"
