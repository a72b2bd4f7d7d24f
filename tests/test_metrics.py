"""Prometheus metrics with the real prometheus_client: the real proxy and relay against the
simulator, read from prometheus_client's default registry before and after."""

from __future__ import annotations

import collections
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from portal_fixtures import Browser, make_portal
from prometheus_client import REGISTRY, generate_latest
from relay_clients import RelayClient

from flask_thrillconnect import ThrillConnect, metrics
from flask_thrillconnect.client import ThrillConnectClient
from flask_thrillconnect.errors import UpstreamNotFound

DOCS = Path(__file__).resolve().parent.parent / "docs"
CACHE_RESULTS = ("hit", "miss", "stale", "updating")


def sample(name: str, **labels: str) -> float:
    """The current value of one series (0 when it does not exist yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.02)
    pytest.fail(f"condition not met within {timeout} s")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ticker_path(sim: Any, role: str = "progressive") -> str:
    return f"/thrillconnect/v1/thrillpots/instances/{sim.instance_ids[role]}/ticker"


# -- the cache ----------------------------------------------------------------------------------


def cache_figures(kind: str) -> dict[str, float]:
    return {
        result: sample("thrillconnect_cache_requests_total", kind=kind, result=result)
        for result in CACHE_RESULTS
    }


def test_cached_reads_are_counted_per_kind_and_result_as_x_cache_says(thrillconnect_sim):
    app = make_portal(thrillconnect_sim, THRILLCONNECT_CACHE_TTL={"ticker": 60})
    tc: ThrillConnect = app.extensions["test_tc"]
    client = app.test_client()
    path = ticker_path(thrillconnect_sim)
    before = cache_figures("ticker")
    seen: collections.Counter[str] = collections.Counter()

    def get() -> str:
        status = client.get(path).headers["X-Cache"]
        seen[status.lower()] += 1
        return status

    assert [get(), get()] == ["MISS", "HIT"]
    with app.app_context():
        tc.cache_expire()
    thrillconnect_sim.faults(rest={"status": 503})
    assert get() == "UPDATING"  # the background refresh fails: the stale copy stands in
    wait_for(lambda: get() == "STALE")

    after = cache_figures("ticker")
    assert {r: after[r] - before[r] for r in CACHE_RESULTS} == {r: seen[r] for r in CACHE_RESULTS}
    app.extensions["thrillconnect"].close()


# -- upstream REST ------------------------------------------------------------------------------


def upstream_figures(kind: str) -> dict[str, float]:
    figures = {
        "count": sample("thrillconnect_upstream_request_duration_seconds_count", kind=kind),
        "sum": sample("thrillconnect_upstream_request_duration_seconds_sum", kind=kind),
    }
    for reason in ("timeout", "connection", "4xx", "5xx", "invalid_response"):
        figures[reason] = sample("thrillconnect_upstream_errors_total", kind=kind, reason=reason)
    return figures


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in before if after[key] != before[key]}


def test_upstream_calls_are_timed_and_failures_counted_by_reason(thrillconnect_sim):
    app = make_portal(thrillconnect_sim, THRILLCONNECT_TIMEOUT=(0.5, 0.5))
    client = app.test_client()

    before = upstream_figures("currencies")
    assert client.get("/thrillconnect/v1/currencies").status_code == 200
    after = upstream_figures("currencies")
    assert moved(before, after).keys() == {"count", "sum"}
    assert after["count"] - before["count"] == 1
    assert 0 < after["sum"] - before["sum"] < 0.5

    before = upstream_figures("sources")
    thrillconnect_sim.faults(rest={"status": 503})
    assert client.get("/thrillconnect/v1/thrillpots/sources").status_code == 503
    after = upstream_figures("sources")
    # One call (its urllib3 retries inside it), one failure.
    assert moved(before, after).keys() == {"count", "sum", "5xx"}
    assert (after["count"] - before["count"], after["5xx"] - before["5xx"]) == (1, 1)

    before = upstream_figures("sources")
    thrillconnect_sim.faults(rest={"delay": 1.5})
    assert client.get("/thrillconnect/v1/thrillpots/sources?name=x").status_code == 504
    after = upstream_figures("sources")
    assert (after["timeout"] - before["timeout"], after["count"] - before["count"]) == (1, 1)
    assert after["sum"] - before["sum"] >= 0.5
    thrillconnect_sim.faults()


def test_a_refused_connection_and_a_404_count_as_their_reasons(thrillconnect_sim):
    down = make_portal(thrillconnect_sim, THRILLCONNECT_URL=f"http://127.0.0.1:{closed_port()}")
    before = upstream_figures("currencies")
    assert down.test_client().get("/thrillconnect/v1/currencies").status_code == 502
    assert upstream_figures("currencies")["connection"] - before["connection"] == 1

    client = ThrillConnectClient(
        thrillconnect_sim.url, operator_id="thrilltech", brand_id="brand1", retries=0
    )
    before = upstream_figures("ticker")
    with pytest.raises(UpstreamNotFound):
        client.ticker("no-such-instance")
    assert upstream_figures("ticker")["4xx"] - before["4xx"] == 1
    client.close()


# -- the relay ----------------------------------------------------------------------------------


def relay_figures() -> dict[str, float]:
    figures = {
        "connections": sample("thrillconnect_relay_connections"),
        "overflows": sample("thrillconnect_relay_overflows_total"),
        "delay_count": sample("thrillconnect_relay_fanout_delay_seconds_count"),
        "delay_sum": sample("thrillconnect_relay_fanout_delay_seconds_sum"),
        "service_connected": sample(
            "thrillconnect_upstream_streams", mode="service", state="connected"
        ),
        "service_reconnects": sample(
            "thrillconnect_upstream_stream_reconnects_total", mode="service"
        ),
    }
    for name in (*metrics.RELAYED_EVENTS, "other"):
        figures[name] = sample("thrillconnect_relay_events_total", msg_name=name)
    return figures


def test_relayed_events_browsers_and_fan_out_delay(
    make_live_portal, relay_socket, thrillconnect_sim
):
    before = relay_figures()
    portal = make_live_portal()
    client = relay_socket(portal).live()
    wait_for(lambda: relay_figures()["connections"] == before["connections"] + 1)
    assert relay_figures()["service_connected"] == before["service_connected"] + 1
    client.drain_quiet()

    mid = relay_figures()
    thrillconnect_sim.tick()
    updates = [m for m in collect(client) if m["msg_name"] == "JackpotUpdate"]
    assert updates
    assert relay_figures()["JackpotUpdate"] - mid["JackpotUpdate"] == len(updates)

    # Wins one at a time, each read before the next: every one is a batch of its own.
    instance_id = thrillconnect_sim.instance_ids["progressive"]
    for _ in range(2 * metrics.FANOUT_SAMPLE_EVERY):
        thrillconnect_sim.win(instance_id)
        client.recv_named("WinEvent")
    after = relay_figures()
    assert after["WinEvent"] - mid["WinEvent"] == 2 * metrics.FANOUT_SAMPLE_EVERY
    samples = after["delay_count"] - mid["delay_count"]
    assert samples >= 1
    assert 0 < (after["delay_sum"] - mid["delay_sum"]) / samples < 1.0

    client.close()
    wait_for(lambda: relay_figures()["connections"] == before["connections"])
    portal.app.extensions["thrillconnect"].close()
    wait_for(lambda: relay_figures()["service_connected"] == before["service_connected"])


def collect(client: RelayClient) -> list[dict[str, Any]]:
    start = len(client.seen)
    client.drain_quiet(quiet=0.5)
    return client.seen[start:]


def test_an_outbox_overflow_is_counted_once(make_live_portal, relay_socket):
    portal = make_live_portal()
    relay = portal.app.extensions["thrillconnect"].relay
    client = relay_socket(portal).live()
    before = relay_figures()
    win = {"msg_type": "Event", "source": "thrillpots", "msg_name": "WinEvent",
           "operator_id": "thrilltech", "brand_id": "brand1", "player_id": None,
           "data": {"padding": "x" * 2000}, "timestamp": 0}  # fmt: skip

    for _ in range(6000):  # the browser reads nothing meanwhile
        relay.hub.publish(win, "broadcast")

    assert client.wait_closed() == 1013
    after = relay_figures()
    assert after["overflows"] - before["overflows"] == 1
    assert after["WinEvent"] - before["WinEvent"] == 6000


def test_upstream_stream_state_and_reconnects(make_live_portal, relay_socket, thrillconnect_sim):
    before = relay_figures()
    portal = make_live_portal()
    client = relay_socket(portal).live()
    assert relay_figures()["service_connected"] == before["service_connected"] + 1

    thrillconnect_sim.faults(ws="refuse")
    thrillconnect_sim.faults(ws="drop")  # drops the stream once; new ones are refused
    client.recv_until(lambda m: m.get("data", {}).get("upstream") == "reconnecting")
    wait_for(
        lambda: sample("thrillconnect_upstream_streams", mode="service", state="reconnecting") >= 1
    )
    assert relay_figures()["service_connected"] == before["service_connected"]
    assert relay_figures()["service_reconnects"] == before["service_reconnects"]

    thrillconnect_sim.faults()
    client.connected()
    wait_for(lambda: relay_figures()["service_reconnects"] == before["service_reconnects"] + 1)
    assert relay_figures()["service_connected"] == before["service_connected"] + 1


def test_no_label_names_a_player_or_an_instance(make_live_portal, relay_socket, thrillconnect_sim):
    """Player streams are labelled ``player``, never with the player's id."""
    portal = make_live_portal(THRILLCONNECT_SERVICE_TOKEN=None)
    browser = Browser(portal.url).login("player_00001")
    relay_socket(portal, browser).live()
    browser.api("GET", ticker_path(thrillconnect_sim).removeprefix("/thrillconnect"))

    exposition = generate_latest().decode()
    assert 'thrillconnect_upstream_streams{mode="player",state="connected"}' in exposition
    ours = [line for line in exposition.splitlines() if line.startswith("thrillconnect_")]
    for instance_id in thrillconnect_sim.instance_ids.values():
        assert instance_id not in "\n".join(ours)
    assert "player_00001" not in "\n".join(ours)
    browser.close()


# -- one registration per process ---------------------------------------------------------------


def test_many_apps_in_one_process_share_one_set_of_metrics(thrillconnect_sim):
    before = sample("thrillconnect_cache_requests_total", kind="currencies", result="miss")
    apps: list[Flask] = []
    for _ in range(25):
        app = make_portal(thrillconnect_sim)
        assert app.test_client().get("/thrillconnect/v1/currencies").status_code == 200
        apps.append(app)

    # Each app has its own cache: 25 misses, added up in one series.
    after = sample("thrillconnect_cache_requests_total", kind="currencies", result="miss")
    assert after - before == 25
    exposition = generate_latest().decode()
    assert exposition.count("# TYPE thrillconnect_cache_requests_total counter") == 1
    for app in apps:
        app.extensions["thrillconnect"].close()


def test_every_metric_is_documented_with_its_type():
    exposition = generate_latest().decode()
    families = {
        name: kind
        for name, kind in re.findall(r"^# TYPE (thrillconnect_\w+) (\w+)$", exposition, re.M)
        if not name.endswith("_created")  # prometheus_client's creation times
    }
    assert len(families) == 9
    operations = (DOCS / "operations.rst").read_text()
    for name, kind in families.items():
        assert re.search(rf"``{name}``\s*\n\s*- {kind}", operations), name


# -- without prometheus_client ------------------------------------------------------------------

WITHOUT_PROMETHEUS = """
import sys
sys.modules["prometheus_client"] = None  # import prometheus_client raises ImportError
from flask import Flask
from flask_thrillconnect import ThrillConnect, metrics
from flask_thrillconnect.relay.hub import RelayHub

assert not metrics.ENABLED
app = Flask("portal")
app.config.update(
    THRILLCONNECT_URL=sys.argv[1],
    THRILLCONNECT_OPERATOR_ID="thrilltech",
    THRILLCONNECT_BRAND_ID="brand1",
)
tc = ThrillConnect(app)
client = app.test_client()
answers = [client.get("/thrillconnect/v1/currencies").headers["X-Cache"] for _ in range(2)]
assert answers == ["MISS", "HIT"], answers

hub = RelayHub(outbox_limit=2)
conn = hub.connect(["broadcast"])
conn.subscribe([("thrillpots", "*")])
for _ in range(4):  # delivered, then overflowed
    hub.publish({"msg_type": "Event", "source": "thrillpots", "msg_name": "WinEvent",
                 "data": {}}, "broadcast")
assert conn.close_code == 1013
assert "prometheus_client" not in {m.split(".")[0] for m, v in sys.modules.items() if v}
app.extensions["thrillconnect"].close()
print("ok")
"""


def test_everything_works_without_prometheus_client(thrillconnect_sim):
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PROMETHEUS, thrillconnect_sim.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- gunicorn's multiprocess mode ---------------------------------------------------------------

WORKER = """
from flask_thrillconnect import metrics
metrics.browser_connected()
metrics.browser_connected()
metrics.cache_answer("ticker", "HIT")
"""

SCRAPE = """
import json, sys
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.multiprocess import mark_process_dead
for pid in sys.argv[1:]:
    mark_process_dead(int(pid))
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
print(json.dumps({
    "connections": registry.get_sample_value("thrillconnect_relay_connections"),
    "hits": registry.get_sample_value(
        "thrillconnect_cache_requests_total", {"kind": "ticker", "result": "hit"}
    ),
}))
"""


def test_the_gauges_add_up_over_live_worker_processes(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done

    workers = [subprocess.Popen([sys.executable, "-c", WORKER], env=env) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=60) == 0

    scraped = json.loads(run(SCRAPE).stdout)
    assert scraped == {"connections": 4.0, "hits": 2.0}
    # gunicorn's child_exit hook calls mark_process_dead: a dead worker's browsers are gone,
    # its counts stay.
    scraped = json.loads(run(SCRAPE, str(workers[0].pid)).stdout)
    assert scraped == {"connections": 2.0, "hits": 2.0}
