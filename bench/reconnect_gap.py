"""The reconnect gap after an outage: how long browsers go without events once the platform is back.

All on 127.0.0.1, every wait bounded, the run stopping by itself:

- the simulator runs as a subprocess (``python -m flask_thrillconnect.testing``, a tick every
  :data:`TICK_SECONDS`);
- two portals (``bench.portal_app`` with ``THRILLCONNECT_SERVICE_TOKEN``, served by this
  module's :func:`create_app` under gunicorn ``gthread``) relay its service stream: one as
  shipped, with recovery probing, and one with probing turned off (``BENCH_RECONNECT_PROBE=0``,
  read only here), the baseline measured in the same run;
- one browser WebSocket on each portal's ``/thrillconnect/v1/events``, subscribed to every
  ``thrillpots`` event;
- each round: events flowing, ``kill -9`` of the simulator, ``--outage`` seconds down (the
  supervisors' back-off grows meanwhile), the simulator restarted on the same port, then the
  time from it accepting TCP connections (polled every :data:`POLL_SECONDS`) to the first
  ``JackpotUpdate`` reaching each browser.

Reported: that gap per round and min/median/max per portal; the goal is <= 2 s.

Run: ``.venv/bin/python -m bench.reconnect_gap [--rounds 3] [--outage 20]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import requests
from flask import Flask
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from bench import portal_app
from bench.serving import free_port, serve
from flask_thrillconnect.relay.upstream import UpstreamSupervisor

#: ``0`` in a portal's environment turns the supervisors' recovery probing off (the baseline).
PROBE_ENV = "BENCH_RECONNECT_PROBE"
RELAY_PATH = "/thrillconnect/v1/events"
SUBSCRIBE_ALL = json.dumps(
    {"SubscribeRequest": {"events": [{"source": "thrillpots", "event_type": "*"}]}}
)
#: Seconds between simulator ticks (a JackpotUpdate per active jackpot each).
TICK_SECONDS = 0.2
#: How often the bench polls the restarted simulator's port: the error of "accepting since".
POLL_SECONDS = 0.005
#: The longest the simulator may take to print its address, or to accept after a restart.
SIM_START_TIMEOUT = 30.0
#: The longest a browser may wait for events: the supervisors' 30 s back-off cap, their 3 s
#: connect timeout and room for a slow machine.
EVENT_TIMEOUT = 45.0
OPEN_TIMEOUT = 10.0
STOP_TIMEOUT = 20.0


def create_app() -> Flask:
    """``bench.portal_app``'s portal; with ``BENCH_RECONNECT_PROBE=0`` its upstream supervisors
    do not probe (gunicorn imports ``bench.reconnect_gap:create_app()``)."""
    if os.environ.get(PROBE_ENV) == "0":
        from flask_thrillconnect.relay import relay as service

        # The relay builds its supervisors through this name; only the baseline portal.
        service.UpstreamSupervisor = functools.partial(  # type: ignore[misc]
            UpstreamSupervisor, probe_interval=None
        )
    return portal_app.create_app()


# -- the simulator, a process of its own ---------------------------------------------------------
class SimulatorProcess:
    """``python -m flask_thrillconnect.testing`` on a fixed port; its printed URL and token."""

    def __init__(self, port: int) -> None:
        command = [
            sys.executable, "-m", "flask_thrillconnect.testing", "--host", "127.0.0.1",
            "--port", str(port), "--tick", str(TICK_SECONDS), "--seed", "1", "--win-chance", "0",
        ]  # fmt: skip
        self.port = port
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, name="sim-stdout", daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def service_token(self) -> str:
        """The service token it prints (valid 24 h, and for a restarted simulator too)."""
        deadline = time.monotonic() + SIM_START_TIMEOUT
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("the simulator printed no service token") from None
            if line.startswith("Service token"):
                return line.split(":", 1)[1].strip()

    def accepting_since(self) -> float:
        """Poll the port until it accepts a TCP connection; answer ``time.monotonic()`` then."""
        deadline = time.monotonic() + SIM_START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return time.monotonic()
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the simulator did not start accepting") from None
                time.sleep(POLL_SECONDS)

    def kill(self) -> None:
        """``kill -9``: no close frames, no clean shutdown; the platform just vanishes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()


# -- the portals ---------------------------------------------------------------------------------
@dataclass
class Portal:
    label: str
    url: str
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{RELAY_PATH}"

    def stream(self) -> dict[str, object]:
        health = requests.get(f"{self.url}/thrillconnect/health/detail", timeout=10).json()
        return health["upstream"]["stream"]


@contextmanager
def relay_portal(label: str, sim_url: str, token: str, *, probing: bool) -> Iterator[Portal]:
    """:func:`create_app` under gunicorn gthread (one worker), relaying ``sim_url``'s service
    stream; stopped after."""
    env = {
        "THRILLCONNECT_URL": sim_url,
        "THRILLCONNECT_SERVICE_TOKEN": token,
        "BENCH_INSTANCE_ID": "unused",  # for bench.portal_app's /bare, not requested here
        PROBE_ENV: "1" if probing else "0",
    }
    args = ["--worker-class", "gthread", "--workers", "1", "--threads", "8",
            "--graceful-timeout", "5"]  # fmt: skip
    with serve(
        "bench.reconnect_gap:create_app()",
        args,
        env,
        ready_path="/thrillconnect/health",
        stop_timeout=STOP_TIMEOUT,
    ) as (url, port, _):
        yield Portal(label, url, port)


# -- the browsers --------------------------------------------------------------------------------
class Browser:
    """A relay WebSocket (opened by :func:`open_browser`); every message's arrival time
    (``time.monotonic()``) is recorded."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.connection.send(SUBSCRIBE_ALL)
        self._received: list[tuple[float, dict[str, object]]] = []
        self._changed = threading.Condition()
        self._closing = False
        self.closed_early = False
        self._reader = threading.Thread(target=self._read, name="browser", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for raw in self.connection:
                at = time.monotonic()
                with self._changed:
                    self._received.append((at, json.loads(raw)))
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        with self._changed:
            self.closed_early = not self._closing
            self._changed.notify_all()

    def first(
        self, matches: Callable[[dict[str, object]], bool], after: float, timeout: float
    ) -> float | None:
        """Arrival time of the first message that ``matches`` and arrived after ``after``;
        ``None`` if none within ``timeout``."""

        def found() -> float | None:
            return next((at for at, m in self._received if at > after and matches(m)), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None or self.closed_early, timeout)
            return found()

    def close(self) -> None:
        self._closing = True
        self.connection.close()
        self._reader.join(OPEN_TIMEOUT)


def open_browser(stack: ExitStack, portal: Portal) -> Browser:
    """A browser on ``portal``'s relay, subscribed; closed when ``stack`` closes."""
    connection = stack.enter_context(
        connect(
            portal.ws_url,
            origin=portal.url,  # type: ignore[arg-type]
            open_timeout=OPEN_TIMEOUT,
            close_timeout=2,
        )
    )
    browser = Browser(connection)
    stack.callback(browser.close)
    return browser


def jackpot_update(message: dict[str, object]) -> bool:
    return message.get("msg_name") == "JackpotUpdate"


def relay_connected(message: dict[str, object]) -> bool:
    data = message.get("data")
    return (
        message.get("msg_name") == "RelayStatus"
        and isinstance(data, dict)
        and data.get("upstream") == "connected"
    )


# -- the run -------------------------------------------------------------------------------------
def seconds(value: float | None) -> str:
    return f"> {EVENT_TIMEOUT:.0f} s" if value is None else f"{value:.2f} s"


def summary(gaps: list[float | None]) -> str:
    measured = sorted(gap for gap in gaps if gap is not None)
    missing = len(gaps) - len(measured)
    if not measured:
        return "no figures"
    text = (
        f"min {measured[0]:.2f} s, median {statistics.median(measured):.2f} s, "
        f"max {measured[-1]:.2f} s"
    )
    if missing:
        text += f" ({missing} rounds without events within {EVENT_TIMEOUT:.0f} s)"
    return text


def run(rounds: int, outage: float) -> int:
    port = free_port()
    with ExitStack() as stack:
        sims = [SimulatorProcess(port)]
        stack.callback(lambda: sims[-1].stop())
        token = sims[0].service_token()
        sim_url = f"http://127.0.0.1:{port}"
        portals = [
            stack.enter_context(relay_portal("probing", sim_url, token, probing=True)),
            stack.enter_context(relay_portal("no probing", sim_url, token, probing=False)),
        ]
        browsers = {portal.label: open_browser(stack, portal) for portal in portals}
        gaps: dict[str, list[float | None]] = {portal.label: [] for portal in portals}
        for number in range(1, rounds + 1):
            flowing_since = time.monotonic()
            for label, browser in browsers.items():
                if browser.first(jackpot_update, flowing_since, EVENT_TIMEOUT) is None:
                    raise RuntimeError(f"no events reach the {label} browser before the outage")
            sims[-1].kill()
            time.sleep(outage)  # the outage: the supervisors retry and their back-off grows
            sims.append(SimulatorProcess(port))
            up_at = sims[-1].accepting_since()
            parts = []
            for portal in portals:
                browser = browsers[portal.label]
                update_at = browser.first(jackpot_update, up_at, EVENT_TIMEOUT)
                # Already arrived (or never will) by now: no second long wait.
                connected_at = browser.first(relay_connected, up_at, 0.0)
                gap = None if update_at is None else update_at - up_at
                gaps[portal.label].append(gap)
                relay = None if connected_at is None else connected_at - up_at
                parts.append(
                    f"{portal.label}: first JackpotUpdate {seconds(gap)} "
                    f"(relay connected {seconds(relay)})"
                )
            print(f"round {number}: after accepting again — " + "; ".join(parts), flush=True)
        for portal in portals:
            stream = portal.stream()
            print(
                f"{portal.label:>10}: {summary(gaps[portal.label])}; upstream "
                f"{stream.get('state')}, {stream.get('reconnects')} reconnects",
                flush=True,
            )
        closed = [label for label, browser in browsers.items() if browser.closed_early]
        if closed:
            print(f"FAILED: browsers closed during the run: {closed}", flush=True)
            return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="outages to measure (default 3)")
    parser.add_argument(
        "--outage", type=float, default=20.0, help="seconds the simulator stays down (default 20)"
    )
    args = parser.parse_args()
    if args.rounds < 1 or not 0 < args.outage <= 600:
        parser.error("--rounds must be >= 1 and --outage in (0, 600]")
    print(
        f"reconnect gap on {os.cpu_count()} cores: {args.rounds} rounds, outage {args.outage:g} s "
        f"(kill -9), simulator tick {TICK_SECONDS:g} s; gunicorn gthread, 1 worker per portal",
        flush=True,
    )
    try:
        return run(args.rounds, args.outage)
    except RuntimeError as failure:
        print(f"FAILED: {failure}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
