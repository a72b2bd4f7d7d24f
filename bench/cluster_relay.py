"""The relay in cluster mode: issue 10's relay figures, two nodes on one Redis against one worker.

All on 127.0.0.1, each run stopping by itself; the simulator runs in this process with manual
ticks, the portal (``bench.portal_app`` with a service token) under gunicorn ``gthread``:

1. **Fan-out.** N browsers (2,000 by default) on one worker without Redis (the reference), then
   N browsers spread over two nodes of four workers on one Redis, then the same two nodes
   without Redis. For each: the ``JackpotUpdate`` delay p50/p99 over 12 ticks (one a second,
   3 forced wins among them) next to the baseline clients on the simulator's stream directly
   (the load generator's own delay), the WinEvents every browser counted, and the upstream
   service connections. Reported: p99 two nodes ÷ p99 one worker (goal ≤ 1.0), connections
   (8 without Redis, the holders with it).
2. **A browser moving between nodes.** On node A it receives a win, then leaves; 3 wins are
   forced; it comes back on node B with ``since`` and ``relay_id``: the WinEvents it missed
   (all of them without Redis, goal 0 with it).

The holder ``kill -9`` figures come from ``pytest -s tests/test_cluster_failover.py``.

Run: ``.venv/bin/python -m bench.cluster_relay [--clients 2000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from websockets.sync.client import connect

from bench.cluster import redis_server
from bench.relay_fanout import (
    BASELINE_CLIENTS,
    QUIET_SECONDS,
    RELAY_PATH,
    SETTLE_SECONDS,
    THREAD_MARGIN,
    WINS_PER_PHASE,
    ClientProcess,
    Delays,
    tick_phase,
)
from bench.serving import gunicorn_portal
from bench.ws_clients import raise_file_limit
from flask_thrillconnect.testing import Simulator

NODES = 2
WORKERS = 4
DEFAULT_CLIENTS = 2000
#: Wins forced while the moving browser is away.
MISSED_WINS = 3
SUBSCRIBE_ALL = {"SubscribeRequest": {"events": [{"source": "thrillpots", "event_type": "*"}]}}


@dataclass
class Node:
    url: str
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{RELAY_PATH}"


@contextmanager
def nodes(
    sim: Simulator, count: int, workers: int, browsers: int, redis_url: str | None
) -> Iterator[list[Node]]:
    """``count`` gunicorn masters of ``workers`` gthread workers; any worker may get every
    browser of its node, so each has a thread per browser of the node."""
    threads = browsers // count + THREAD_MARGIN
    args = [
        "--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads),
        "--worker-connections", str(threads + THREAD_MARGIN),
        "--backlog", "2048", "--graceful-timeout", "5",
    ]  # fmt: skip
    with ExitStack() as stack:
        started = [
            stack.enter_context(gunicorn_portal(sim, args, service_token=True, redis_url=redis_url))
            for _ in range(count)
        ]
        yield [Node(url, port) for url, port, _ in started]


def fan_out(sim: Simulator, portal: list[Node], browsers: int) -> dict[str, Any]:
    """``browsers`` spread evenly over the nodes' relays, one tick phase; the figures."""
    max_seconds = 300 + browsers / 10
    with ExitStack() as stack:
        player = sim.players["player_00001"]
        direct_url = (
            f"{sim.ws_url}/v1/events/thrilltech/brand1?token={player['token']}"
            f"&currency={player['currency']}"
        )
        baseline = ClientProcess(
            direct_url, BASELINE_CLIENTS, origin=None, relay=False, deflate=True,
            max_seconds=max_seconds,
        )  # fmt: skip
        stack.callback(baseline.close)
        # Two client processes whatever the node count, so the load generator is the same.
        targets = portal * (2 // len(portal)) if len(portal) < 2 else portal
        shares = [browsers // len(targets) + (i < browsers % len(targets))
                  for i in range(len(targets))]  # fmt: skip
        clients = []
        for node, share in zip(targets, shares, strict=True):
            client = ClientProcess(
                node.ws_url, share, origin=node.url, relay=True, deflate=True,
                max_seconds=max_seconds,
            )  # fmt: skip
            stack.callback(client.close)
            clients.append(client)
        ready = [client.expect("ready", timeout=120 + browsers / 20) for client in clients]
        if baseline.expect("ready", timeout=60)["connected"] != BASELINE_CLIENTS:
            raise RuntimeError("the baseline clients did not connect")
        connected = sum(r["connected"] for r in ready)
        errors: Counter[str] = Counter()
        for r in ready:
            errors.update(r["errors"])
        time.sleep(SETTLE_SECONDS)
        service = sim.stats()["connections"]["service"]
        sim.tick()  # warm-up: every path exercised once
        time.sleep(SETTLE_SECONDS)
        window, _ = tick_phase(sim, WINS_PER_PHASE)
        for client in (*clients, baseline):
            client.send({"command": "report", "windows": {"A": window}, "quiet": QUIET_SECONDS})
        reports = [client.expect("report", timeout=90) for client in clients]
        baseline_report = baseline.expect("report", timeout=90)
    relay, direct = Delays(), Delays()
    for report in reports:
        relay.add(report["phases"]["A"])
    direct.add(baseline_report["phases"]["A"])
    wins: Counter[int] = Counter()
    for report in reports:
        wins.update({int(k): v for k, v in report["wins"].items()})
    return {
        "connected": connected,
        "errors": dict(errors),
        "service": service,
        "relay": relay,
        "direct": direct,
        "wins": dict(sorted(wins.items())),
        "lost": sum(v for k, v in wins.items() if k != WINS_PER_PHASE),
    }


def missed_by_a_moving_browser(sim: Simulator, leave: Node, arrive: Node) -> tuple[int, bool]:
    """A browser leaves ``leave`` after a win and comes back on ``arrive`` with ``since``:
    how many of the wins forced meanwhile it never got, and whether it was resumed."""
    sitewide = sim.instance_ids["sitewide"]
    with connect(leave.ws_url, origin=leave.url, open_timeout=10, close_timeout=2) as browser:
        browser.send(json.dumps(SUBSCRIBE_ALL))
        relay_id = _receive(browser, "RelayStatus")["data"]["relay_id"]
        time.sleep(0.5)  # subscribed
        sim.win(sitewide)
        since = _receive(browser, "WinEvent")["seq"]
    missed = {json.dumps(sim.win(sitewide), sort_keys=True) for _ in range(MISSED_WINS)}
    time.sleep(1.0)  # every worker of every node has them
    query = urlencode({"since": since, "relay_id": relay_id})
    with connect(
        f"{arrive.ws_url}?{query}", origin=arrive.url, open_timeout=10, close_timeout=2
    ) as browser:
        resumed = bool(_receive(browser, "RelayStatus")["data"].get("resumed"))
        browser.send(json.dumps(SUBSCRIBE_ALL))
        received = set()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            try:
                message = json.loads(browser.recv(timeout=max(0.05, deadline - time.monotonic())))
            except TimeoutError:
                break
            if message.get("msg_name") == "WinEvent":
                received.add(json.dumps(message["data"], sort_keys=True))
    return len(missed - received), resumed


def _receive(browser: Any, name: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message: dict[str, Any] = json.loads(
            browser.recv(timeout=max(0.05, deadline - time.monotonic()))
        )
        if message.get("msg_name") == name:
            return message


def _line(label: str, figures: dict[str, Any]) -> str:
    relay, direct = figures["relay"], figures["direct"]
    return (
        f"{label}: {figures['connected']} browsers"
        + (f" (failures: {figures['errors']})" if figures["errors"] else "")
        + "; upstream service connections "
        f"{figures['service']}; JackpotUpdate delay relay {relay.summary()}, direct "
        f"p99 {direct.percentile(0.99):.1f} ms; browsers by WinEvents counted {figures['wins']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS)
    args = parser.parse_args(argv)
    raise_file_limit()
    browsers = args.clients
    print(f"relay in cluster mode on {os.cpu_count()} cores; {browsers} browsers in 2 client "
          f"processes; {BASELINE_CLIENTS} baseline clients on the simulator directly",
          flush=True)  # fmt: skip
    failed = False
    with Simulator(tick_interval=0, seed=1) as sim, redis_server() as redis_url:
        with nodes(sim, 1, 1, browsers, None) as single:
            reference = fan_out(sim, single, browsers)
        print(_line("1 node x 1 worker, no Redis", reference), flush=True)
        moves: dict[str, tuple[int, bool]] = {}
        runs: dict[str, dict[str, Any]] = {}
        for label, url in (("with Redis", redis_url), ("without Redis", None)):
            with nodes(sim, NODES, WORKERS, browsers, url) as pair:
                runs[label] = fan_out(sim, pair, browsers)
                moves[label] = missed_by_a_moving_browser(sim, pair[0], pair[1])
            print(_line(f"{NODES} nodes x {WORKERS} workers, {label}", runs[label]), flush=True)
        for label, (missed, resumed) in moves.items():
            print(
                f"browser moving from node A to node B with since, {label}: resumed "
                f"{str(resumed).lower()}, {missed} of {MISSED_WINS} WinEvents missed"
            )
        cluster = runs["with Redis"]
        ratio = cluster["relay"].percentile(0.99) / reference["relay"].percentile(0.99)
        print(f"fan-out p99, {browsers} browsers over {NODES} nodes with Redis / on 1 worker: "
              f"{ratio:.2f} (goal <= 1.0)")  # fmt: skip
        for run in (reference, *runs.values()):
            failed |= bool(run["lost"]) or run["connected"] < browsers
        failed |= moves["with Redis"][0] != 0
    if failed:
        print("FAILED: a browser did not connect, lost a WinEvent, or missed one after moving")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
