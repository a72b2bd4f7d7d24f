"""The cluster as operators run it: two gunicorn masters ("nodes") of two workers each, on one
Redis, against the simulator; browsers are real sockets landing on whichever worker accepts.

Gunicorn imports :func:`create_app` from this module (the tests' folder is on its path).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from gunicorn_fixtures import WORKER_CLASSES, GunicornPortal, gunicorn_portal
from relay_clients import SUBSCRIBE_ALL, RelayClient
from websockets.sync.client import connect

from flask_thrillconnect import ThrillConnect

if TYPE_CHECKING:
    from redis_fixtures import RedisServer

pytest_plugins = ("redis_fixtures",)

NODES = 2
WORKERS = 2
#: Browsers opened on each node: enough that every worker very likely gets some.
BROWSERS_PER_NODE = 6
CONNECT_TIMEOUT = 20.0


def create_app() -> Flask:
    """The portal of every worker, configured from the environment."""
    app = Flask("cluster_node")
    app.config.update(
        SECRET_KEY="cluster-nodes-test",
        THRILLCONNECT_URL=os.environ["THRILLCONNECT_URL"],
        THRILLCONNECT_OPERATOR_ID="thrilltech",
        THRILLCONNECT_BRAND_ID="brand1",
        THRILLCONNECT_SERVICE_TOKEN=os.environ["THRILLCONNECT_SERVICE_TOKEN"],
        THRILLCONNECT_REDIS_URL=os.environ["THRILLCONNECT_REDIS_URL"],
        THRILLCONNECT_TIMEOUT=(1, 2),
    )
    tc = ThrillConnect(app)
    # Loopback only, in a test: anyone may read /health/detail.
    tc.admin_check(lambda: True)

    @app.get("/_test/ready")
    def ready() -> dict[str, int]:
        return {"pid": os.getpid()}

    return app


@pytest.fixture(params=WORKER_CLASSES)
def nodes(
    request: pytest.FixtureRequest,
    thrillconnect_sim: Any,
    redis_server: RedisServer,
    tmp_path: Path,
) -> Iterator[list[GunicornPortal]]:
    """NODES gunicorn masters of WORKERS workers, under each worker class (the cluster's
    Redis reader and lease keeper are greenlets under gevent)."""
    env = {
        "THRILLCONNECT_URL": thrillconnect_sim.url,
        "THRILLCONNECT_SERVICE_TOKEN": thrillconnect_sim.service_token,
        "THRILLCONNECT_REDIS_URL": redis_server.url,
    }
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                gunicorn_portal(
                    request.param,
                    env,
                    app="test_cluster_nodes:create_app()",
                    extra_args=["--workers", str(WORKERS)],
                    tmp_dir=tmp_path,
                )
            )
            for _ in range(NODES)
        ]


@pytest.fixture
def open_browser() -> Iterator[Callable[..., RelayClient]]:
    with ExitStack() as stack:

        def open_socket(node: GunicornPortal, subscribe: bool = True, **query: Any) -> RelayClient:
            url = node.ws_url + ("?" + urlencode(query) if query else "")
            connection = stack.enter_context(
                connect(url, origin=node.url, open_timeout=CONNECT_TIMEOUT, close_timeout=2)
            )
            client = RelayClient(connection)
            if subscribe:
                client.subscribe(SUBSCRIBE_ALL)
            return client

        yield open_socket


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(0.1)


def win_key(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True)


def receives_win(client: RelayClient, expected: str, timeout: float = 10.0) -> dict[str, Any]:
    return client.recv_until(
        lambda m: m.get("msg_name") == "WinEvent" and win_key(m["data"]) == expected, timeout
    )


def test_two_nodes_share_one_upstream_stream_and_a_browser_resumes_across_them(
    nodes, open_browser, thrillconnect_sim
):
    sim = thrillconnect_sim
    node_b = nodes[1]
    browsers = [open_browser(node) for node in nodes for _ in range(BROWSERS_PER_NODE)]
    try:
        for browser in browsers:
            browser.connected(timeout=CONNECT_TIMEOUT)
    except TimeoutError:
        # Which worker of which node is stuck, and how (answered by whichever worker accepts).
        print([[node.health()["relay"] for _ in range(4)] for node in nodes], sim.stats())
        raise
    # However the browsers spread over the four workers: two holder slots, two connections.
    wait_for(lambda: sim.stats()["connections"]["service"] == 2)

    leaving = browsers[0]  # on node A
    watcher = browsers[-1]  # on node B
    first = win_key(sim.win(sim.instance_ids["sitewide"]))
    last_seen = receives_win(leaving, first)
    relay_id = leaving.seen[0]["data"]["relay_id"]
    leaving.close()
    missed = [win_key(sim.win(sim.instance_ids["sitewide"])) for _ in range(3)]
    for expected in missed:
        receives_win(watcher, expected)  # node B has published them all

    back = open_browser(node_b, subscribe=False, since=str(last_seen["seq"]), relay_id=relay_id)
    status = back.recv_named("RelayStatus")
    back.subscribe(SUBSCRIBE_ALL)
    wins = [back.recv_named("WinEvent") for _ in missed]

    assert status["data"]["resumed"] is True
    assert [win_key(win["data"]) for win in wins] == missed
    assert all(win["seq"] > last_seen["seq"] for win in wins)
    # Every browser of both nodes saw the same seq for the same win.
    final = win_key(sim.win(sim.instance_ids["sitewide"]))
    seqs = {receives_win(browser, final)["seq"] for browser in browsers[1:]}
    assert len(seqs) == 1
    assert sim.stats()["connections"]["service"] == 2
