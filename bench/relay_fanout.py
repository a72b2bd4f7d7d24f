"""The live-event relay under many browsers: latency, lost wins, memory and CPU per browser.

For each browser count N, all on 127.0.0.1 and each run stopping by itself:

- the simulator runs in this process with manual ticks; the portal (``bench.portal_app``,
  ``THRILLCONNECT_SERVICE_TOKEN`` set) runs under gunicorn with one worker of each class asked
  for (``--worker``): ``gthread`` with N + margin threads (a browser's request thread waits
  for its end), ``gevent`` with ``--worker-connections`` N + margin (a browser's request ends
  once upgraded; the slots bound the handshakes in flight);
- N browsers (``bench/ws_clients.js``: WebSocket written on Node's raw sockets, light enough
  not to be the bottleneck; or ``bench/ws_clients.py``, the ``websockets`` asyncio client), in
  :data:`CLIENT_PROCESSES` processes of their own, and a handful of baseline clients on the
  simulator's player stream directly (one more process) connect and subscribe to every
  ``thrillpots`` event;
- phase A: :data:`TICKS_PER_PHASE` ticks, one a second, with :data:`WINS_PER_PHASE` forced
  ``WinEvent`` s; phase B: the same with one stalled browser (subscribes, never reads);
- each client records the delay from every ``JackpotUpdate``'s ``timestamp`` (set by the
  simulator when it produced the event, in ms) to its receipt.

Reported: delay p50/p99 per phase against the direct baseline, wins counted by every
client (must be exactly K: the run fails otherwise), upstream connections, gunicorn worker
RSS growth per idle browser, worker CPU per delivered message (phase B's: no probe requests).

Run: ``.venv/bin/python -m bench.relay_fanout [--clients 1000 5000 10000] [--worker gthread
gevent] [--repeat N]``; each count runs under each worker in turn (N times), and a table
compares them at the end, with the median and range of the added p99 over repeated runs.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.serving import gunicorn_portal
from bench.ws_clients import StalledBrowser, raise_file_limit
from flask_thrillconnect.testing import Simulator

DEFAULT_CLIENTS = (1000, 5000, 10000)
WORKER_CLASSES = ("gthread", "gevent")
#: Browser processes: two keep one client process from being the bottleneck without taking
#: more cores than the machine has.
CLIENT_PROCESSES = 2
BASELINE_CLIENTS = 5
TICKS_PER_PHASE = 12
TICK_SECONDS = 1.0
WINS_PER_PHASE = 3
#: Worker threads beyond one per browser: the stalled browser, readiness and health requests.
THREAD_MARGIN = 64
RELAY_PATH = "/thrillconnect/v1/events"
QUIET_SECONDS = 1.5
#: Seconds between two requests of the responsiveness probe.
PROBE_INTERVAL = 0.05
SETTLE_SECONDS = 2.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the gunicorn worker, seen from /proc ---------------------------------------------------------
def worker_pid(master_pid: int, timeout: float = 30.0) -> int:
    """The gunicorn worker: the master's only child."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{master_pid}/task/{master_pid}/children") as children:
            pids = children.read().split()
        if len(pids) == 1:
            return int(pids[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn has no single worker")


def proc_status(pid: int, key: str) -> int:
    """A numeric field of /proc/<pid>/status (``VmRSS`` in kB, ``Threads``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def tcp_queues(local_port: int, remote_port: int) -> tuple[int, int] | None:
    """``(tx_queue, rx_queue)`` bytes of the 127.0.0.1 TCP socket between two ports."""
    local, remote = f"0100007F:{local_port:04X}", f"0100007F:{remote_port:04X}"
    with open("/proc/net/tcp") as table:
        for line in table:
            parts = line.split()
            if parts[1] == local and parts[2] == remote:
                tx, rx = parts[4].split(":")
                return int(tx, 16), int(rx, 16)
    return None


# -- the portal under gunicorn --------------------------------------------------------------------
@dataclass
class Portal:
    url: str
    port: int
    master: subprocess.Popen[bytes]
    worker: int
    worker_class: str

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{RELAY_PATH}"

    def health(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/thrillconnect/health/detail", timeout=10).json()


def worker_args(worker_class: str, browsers: int) -> list[str]:
    """One worker of ``worker_class`` with room for ``browsers`` sockets and the bench's own."""
    slots = browsers + THREAD_MARGIN
    if worker_class == "gthread":
        # A thread per browser; gthread also stops accepting past worker_connections
        # (default 1000), sockets included.
        return ["--worker-class", "gthread", "--threads", str(slots),
                "--worker-connections", str(slots + THREAD_MARGIN)]  # fmt: skip
    if worker_class == "gevent":
        # A greenlet per request; a browser's ends once upgraded, so the slots only bound the
        # handshakes in flight (kept as large as before, for comparable runs).
        return ["--worker-class", "gevent", "--worker-connections", str(slots)]
    raise ValueError(f"unknown worker class {worker_class!r}")


@contextmanager
def relay_portal(sim: Simulator, browsers: int, worker_class: str) -> Iterator[Portal]:
    """gunicorn, one worker of ``worker_class``, room for every browser."""
    args = [
        *worker_args(worker_class, browsers), "--workers", "1",
        "--backlog", "2048", "--graceful-timeout", "5",
    ]  # fmt: skip
    with gunicorn_portal(sim, args, service_token=True) as (url, port, master):
        yield Portal(url, port, master, worker_pid(master.pid), worker_class)


# -- client processes -----------------------------------------------------------------------------
class ClientProcess:
    """A ``bench.ws_clients`` process and its JSON-lines conversation."""

    def __init__(
        self,
        url: str,
        count: int,
        *,
        origin: str | None,
        relay: bool,
        deflate: bool,
        max_seconds: float,
        client: str = "python",
    ):
        program = (
            ["node", str(Path(__file__).with_name("ws_clients.js"))]
            if client == "node"
            else [sys.executable, "-m", "bench.ws_clients"]
        )
        command = [
            *program, "--url", url, "--count", str(count), "--max-seconds", str(max_seconds),
        ]  # fmt: skip
        if origin:
            command += ["--origin", origin]
        if relay:
            command.append("--relay")
        if not deflate:
            command.append("--no-deflate")
        self.count = count
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put("")

    def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(
                f"no {event!r} from a client process within {timeout:.0f} s"
            ) from None
        message = json.loads(line) if line else {}
        if message.get("event") != event:
            raise RuntimeError(f"expected {event!r} from a client process, got {line!r}")
        return message

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send({"command": "stop"})
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.send_signal(signal.SIGKILL)
                self.process.wait(timeout=10)


# -- figures --------------------------------------------------------------------------------------
@dataclass
class Delays:
    """Delays (ms) from the event's timestamp to receipt, as a 0.1 ms histogram."""

    histogram: Counter[int] = field(default_factory=Counter)

    def add(self, bins: dict[str, int]) -> None:
        for bin_, count in bins.items():
            self.histogram[int(bin_)] += count

    @property
    def count(self) -> int:
        return sum(self.histogram.values())

    def percentile(self, fraction: float) -> float:
        rank = max(1, round(fraction * self.count))
        seen = 0
        for bin_ in sorted(self.histogram):
            seen += self.histogram[bin_]
            if seen >= rank:
                return bin_ / 10
        return float("nan")

    def summary(self) -> str:
        if not self.count:
            return "no updates"
        return (
            f"p50 {self.percentile(0.5):6.1f} ms  p99 {self.percentile(0.99):6.1f} ms  "
            f"max {max(self.histogram) / 10:6.1f} ms  ({self.count} updates)"
        )


class ResponsivenessProbe:
    """Requests the portal's bare route every :data:`PROBE_INTERVAL` s from a thread of its
    own while the ticks run: how long an ordinary request waits while the relay fans out."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seconds: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.wait(PROBE_INTERVAL):
                started = time.perf_counter()
                try:
                    session.get(self.url, timeout=5).raise_for_status()
                except requests.RequestException:
                    self.failures += 1
                    continue
                self.seconds.append(time.perf_counter() - started)

    def stop(self) -> str:
        """Stop; a summary line."""
        self._stop.set()
        self._thread.join(10)
        if not self.seconds:
            return f"no answer ({self.failures} failures)"
        ordered = sorted(self.seconds)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)))]
        return (
            f"p50 {1000 * ordered[len(ordered) // 2]:.1f} ms, p99 {1000 * p99:.1f} ms, max "
            f"{1000 * ordered[-1]:.1f} ms over {len(ordered)} requests; {self.failures} failed"
        )


def now_ms() -> int:
    return int(time.time() * 1000)


def tick_phase(sim: Simulator, wins: int) -> tuple[list[int], list[float]]:
    """One tick a second with ``wins`` wins among them; its timestamp window and tick times."""
    sitewide = sim.instance_ids["sitewide"]
    win_at = {TICKS_PER_PHASE * (i + 1) // (wins + 1) for i in range(wins)}
    start = now_ms()
    tick_seconds = []
    next_tick = time.monotonic()
    for number in range(TICKS_PER_PHASE):
        time.sleep(max(0.0, next_tick - time.monotonic()))
        started = time.perf_counter()
        sim.tick()
        tick_seconds.append(time.perf_counter() - started)
        if number in win_at:
            sim.win(sitewide)
        next_tick += TICK_SECONDS
    time.sleep(SETTLE_SECONDS)  # nothing stamped later belongs to this phase
    return [start, now_ms()], tick_seconds


def measure(
    browsers: int, deflate: bool, worker_class: str, figures: dict[str, Any], client_kind: str
) -> tuple[list[str], bool]:
    """One run with ``browsers`` relay browsers: the report's lines, and whether it held;
    the table's figures go into ``figures``."""
    lines: list[str] = []
    ok = True
    max_seconds = 300 + browsers / 10
    with ExitStack() as stack:
        sim = stack.enter_context(Simulator(tick_interval=0, seed=1))
        portal = stack.enter_context(relay_portal(sim, browsers, worker_class))
        rss_before = proc_status(portal.worker, "VmRSS")
        threads_before = proc_status(portal.worker, "Threads")
        player = sim.players["player_00001"]
        direct_url = (
            f"{sim.ws_url}/v1/events/thrilltech/brand1?token={player['token']}"
            f"&currency={player['currency']}"
        )
        baseline = ClientProcess(
            direct_url,
            BASELINE_CLIENTS,
            origin=None,
            relay=False,
            deflate=deflate,
            max_seconds=max_seconds,
            client=client_kind,
        )
        stack.callback(baseline.close)
        shares = [browsers // CLIENT_PROCESSES + (i < browsers % CLIENT_PROCESSES)
                  for i in range(CLIENT_PROCESSES)]  # fmt: skip
        clients = []
        for share in shares:
            client = ClientProcess(
                portal.ws_url,
                share,
                origin=portal.url,
                relay=True,
                deflate=deflate,
                max_seconds=max_seconds,
                client=client_kind,
            )
            stack.callback(client.close)
            clients.append(client)
        connect_started = time.monotonic()
        ready = [client.expect("ready", timeout=120 + browsers / 20) for client in clients]
        baseline_ready = baseline.expect("ready", timeout=60)
        connect_seconds = time.monotonic() - connect_started
        connected = sum(r["connected"] for r in ready)
        errors: Counter[str] = Counter()
        for r in (*ready, baseline_ready):
            errors.update(r["errors"])
        if baseline_ready["connected"] != BASELINE_CLIENTS:
            raise RuntimeError(f"baseline clients failed to connect: {dict(errors)}")
        time.sleep(SETTLE_SECONDS)  # let the last sockets' bookkeeping finish before reading RSS
        rss_idle = proc_status(portal.worker, "VmRSS")
        threads_idle = proc_status(portal.worker, "Threads")
        sim_connections = sim.stats()["connections"]
        relay_health = portal.health()["relay"]
        lines.append(
            f"browsers: {connected}/{browsers} connected and subscribed in {connect_seconds:.1f} s"
            + (f"; failures: {dict(errors)}" if errors else "")
        )
        if connected < browsers:
            ok = False
        lines.append(
            f"upstream connections at the simulator: service {sim_connections['service']}, "
            f"player {sim_connections['player']} (the {BASELINE_CLIENTS} baseline clients); "
            f"relay counts {relay_health['browsers']} browsers"
        )
        if sim_connections["service"] != 1:
            raise RuntimeError(f"expected 1 service connection, got {sim_connections}")
        per_browser_kib = (rss_idle - rss_before) / max(1, connected)
        figures["connected"] = connected
        figures["kib_per_browser"] = per_browser_kib
        lines.append(
            f"worker RSS: {rss_before / 1024:.0f} MiB -> {rss_idle / 1024:.0f} MiB idle, "
            f"{per_browser_kib:.0f} KiB per browser; threads {threads_before} -> {threads_idle}"
        )

        sim.tick()  # warm-up tick: direct streams subscribed, every path exercised once
        time.sleep(SETTLE_SECONDS)
        worker_cpu_start = cpu_seconds(portal.worker)
        client_cpu_start = [r["cpu_seconds"] for r in ready]
        phase_started = time.monotonic()
        probe = ResponsivenessProbe(f"{portal.url}/bare")
        window_a, ticks_a = tick_phase(sim, WINS_PER_PHASE)
        responsiveness = probe.stop()
        conflated_before_b = portal.health()["relay"]["conflated"]
        stalled = StalledBrowser("127.0.0.1", portal.port, RELAY_PATH, portal.url)
        stack.callback(stalled.close)
        worker_cpu_b_start = cpu_seconds(portal.worker)
        window_b, ticks_b = tick_phase(sim, WINS_PER_PHASE)
        worker_cpu_b = cpu_seconds(portal.worker) - worker_cpu_b_start
        stalled_queues = tcp_queues(portal.port, stalled.local_port)
        relay_after_b = portal.health()["relay"]
        wins = 2 * WINS_PER_PHASE
        windows = {"A": window_a, "B": window_b}
        for client in (*clients, baseline):
            client.send({"command": "report", "windows": windows, "quiet": QUIET_SECONDS})
        reports = [client.expect("report", timeout=90) for client in clients]
        baseline_report = baseline.expect("report", timeout=90)
        phase_seconds = time.monotonic() - phase_started
        worker_cpu = cpu_seconds(portal.worker) - worker_cpu_start
        rss_after = proc_status(portal.worker, "VmRSS")

        relay_delays = {phase: Delays() for phase in windows}
        direct_delays = {phase: Delays() for phase in windows}
        for report in reports:
            for phase, bins in report["phases"].items():
                relay_delays[phase].add(bins)
        for phase, bins in baseline_report["phases"].items():
            direct_delays[phase].add(bins)
        ticks = ticks_a + ticks_b
        lines.append(
            f"ticks: {len(ticks)} at 1/s in two phases of {TICKS_PER_PHASE}; sim.tick() call "
            f"median {sorted(ticks)[len(ticks) // 2] * 1000:.1f} ms, max {max(ticks) * 1000:.1f} ms"
        )
        for phase, label in (("A", "without"), ("B", "with")):
            relay, direct = relay_delays[phase], direct_delays[phase]
            lines.append(f"phase {phase} ({label} the stalled browser), JackpotUpdate delay:")
            lines.append(f"  relay  {relay.summary()}")
            lines.append(f"  direct {direct.summary()}")
            if relay.count and direct.count:
                figures[f"p99_{phase}"] = relay.percentile(0.99)
                figures[f"added_p99_{phase}"] = relay.percentile(0.99) - direct.percentile(0.99)
                figures[f"direct_p99_{phase}"] = direct.percentile(0.99)
                lines.append(
                    f"  relay adds p50 {relay.percentile(0.5) - direct.percentile(0.5):+.1f} ms,"
                    f" p99 {relay.percentile(0.99) - direct.percentile(0.99):+.1f} ms"
                )
        lines.append(f"the portal's bare route during phase A: {responsiveness}")
        win_counts: Counter[int] = Counter()
        for report in reports:
            win_counts.update({int(k): v for k, v in report["wins"].items()})
        closed_early = sum(report["closed_early"] for report in reports)
        lost = sum(v for k, v in win_counts.items() if k != wins)
        figures["lost"] = lost
        lines.append(
            f"wins: {wins} forced; browsers by WinEvents counted {dict(sorted(win_counts.items()))}"
            f"; baseline {baseline_report['wins']}; closed early {closed_early}"
            + ("" if lost == 0 else f"  <-- {lost} BROWSERS LOST WINS")
        )
        if lost or closed_early:
            ok = False
        delivered = sum(report["messages"] for report in reports)
        # Phase B's figure is the relay's own: phase A's includes the probe's requests, whose
        # CPU is spread over few messages at 1,000 browsers.
        delivered_b = relay_delays["B"].count + WINS_PER_PHASE * connected
        figures["cpu_us"] = 1e6 * worker_cpu_b / max(1, delivered_b)
        figures["load"] = os.getloadavg()[0]
        lines.append(
            f"worker CPU: {worker_cpu:.1f} s over {phase_seconds:.0f} s of ticks "
            f"({100 * worker_cpu / phase_seconds:.0f}% of a core), {delivered} messages "
            f"delivered, {1e6 * worker_cpu / max(1, delivered):.1f} us per message (the probe's "
            f"requests included); phase B alone {worker_cpu_b:.2f} s, {delivered_b} messages, "
            f"{figures['cpu_us']:.1f} us per message; RSS after ticks {rss_after / 1024:.0f} MiB"
        )
        client_cpu = [
            report["cpu_seconds"] - start
            for report, start in zip(reports, client_cpu_start, strict=True)
        ]
        lines.append(
            "client processes' CPU over the same time: "
            + ", ".join(f"{100 * c / phase_seconds:.0f}%" for c in client_cpu)
            + f" of a core; load average {os.getloadavg()[0]:.1f}"
        )
        # Averages over the phases hide that both sides work in the same few milliseconds
        # of each tick, on the same two cores: per browser per tick, side by side.
        browser_ticks = max(1, connected) * len(ticks)
        lines.append(
            f"CPU per browser per tick: worker {1e6 * worker_cpu / browser_ticks:.1f} us, "
            f"browser processes {1e6 * sum(client_cpu) / browser_ticks:.1f} us"
        )
        lags = [r.get("lag_p99_ms") for r in (*reports, baseline_report)]
        if any(lag is not None for lag in lags):
            # The load generator's own delay: how late its event loops ran (Node clients).
            worst = [r.get("lag_max_ms") for r in (*reports, baseline_report)]
            collections = [r.get("gc_max_ms") for r in (*reports, baseline_report)]
            lines.append(
                "client event-loop lag p99 / max / longest GC (browsers..., baseline): "
                + ", ".join(
                    f"{lag:.1f} / {top:.1f} / {gc:.1f} ms"
                    if lag is not None and top is not None and gc is not None
                    else "-"
                    for lag, top, gc in zip(lags, worst, collections, strict=True)
                )
            )
            figures["client_lag_ms"] = max(lag for lag in lags if lag is not None)
        lines.append(
            f"the relay's pass: {relay_after_b['pass_us_per_browser']} us per browser per tick"
            " (smoothed, from /health/detail)"
        )
        queues = f"{stalled_queues[0]} B unsent by the server" if stalled_queues else "gone"
        lines.append(
            f"stalled browser: socket {queues}; hub-wide conflations during phase B "
            f"{relay_after_b['conflated'] - conflated_before_b}; overflow closes "
            f"{relay_after_b['overflow_closes']}"
        )
    if lost:
        raise RuntimeError("\n".join(lines) + "\nWinEvents were lost")
    return lines, ok


#: A table row's key: browsers, worker class, and the run's number (``--repeat``).
RunKey = tuple[int, str, int]


def table(results: dict[RunKey, dict[str, Any]]) -> list[str]:
    """The side-by-side table: one row per browser count, worker class and run."""

    def cell(figures: dict[str, Any], key: str, fmt: str) -> str:
        value = figures.get(key)
        return format(value, fmt) if value is not None else "-"

    rows = [
        "browsers  worker   connected  relay p99 (A)  added p99 (A)  added p99 (B)  "
        "wins lost  KiB/browser  CPU us/msg  client lag  load",
    ]
    for (browsers, worker_class, _run), figures in results.items():
        rows.append(
            f"{browsers:>8}  {worker_class:<7}  {cell(figures, 'connected', '>9')}  "
            f"{cell(figures, 'p99_A', '>10.1f')} ms  {cell(figures, 'added_p99_A', '>+10.1f')} ms  "
            f"{cell(figures, 'added_p99_B', '>+10.1f')} ms  {cell(figures, 'lost', '>9')}  "
            f"{cell(figures, 'kib_per_browser', '>11.1f')}  {cell(figures, 'cpu_us', '>10.1f')}  "
            f"{cell(figures, 'client_lag_ms', '>7.1f')} ms  {cell(figures, 'load', '>4.1f')}"
        )
    return rows


def spread(results: dict[RunKey, dict[str, Any]]) -> list[str]:
    """Per browser count and worker class run more than once: the added p99's median and
    range over the runs. One run's p99 is set by its worst ticks and moves by several ms
    from run to run on a shared machine; a goal is judged on the median."""
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for (browsers, worker_class, _run), figures in results.items():
        runs.setdefault((browsers, worker_class), []).append(figures)
    lines = []
    for (browsers, worker_class), all_figures in runs.items():
        if len(all_figures) < 2:
            continue
        phases = []
        for phase in ("A", "B"):
            added = sorted(
                f[f"added_p99_{phase}"] for f in all_figures if f"added_p99_{phase}" in f
            )
            if added:
                phases.append(
                    f"{phase} median {statistics.median(added):+.1f} ms "
                    f"({added[0]:+.1f} to {added[-1]:+.1f})"
                )
        lines.append(
            f"{browsers} browsers, {worker_class}, {len(all_figures)} runs: relay adds to p99 "
            + "; ".join(phases)
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=list(DEFAULT_CLIENTS))
    parser.add_argument(
        "--worker",
        nargs="+",
        choices=WORKER_CLASSES,
        default=list(WORKER_CLASSES),
        help="gunicorn worker classes to compare, each count under each (default: both)",
    )
    parser.add_argument(
        "--client",
        choices=("node", "python"),
        default="node",
        help="the browsers' client: bench/ws_clients.js on Node's raw sockets (default) or"
        " bench/ws_clients.py (websockets asyncio)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each count under each worker (a fresh portal and clients each time); "
        "with 2 or more, the median and range of the added p99 are printed too",
    )
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="Python clients do not offer permessage-deflate (Node clients never do)",
    )
    args = parser.parse_args()
    files = raise_file_limit()
    with open("/proc/sys/kernel/threads-max") as threads_max:
        max_threads = threads_max.read().strip()
    deflate = "off" if args.no_deflate or args.client == "node" else "on"
    print(
        f"relay fan-out on {os.cpu_count()} cores; gunicorn {' and '.join(args.worker)}, 1 worker "
        f"(gthread: threads = browsers + {THREAD_MARGIN}; gevent: worker connections = browsers "
        f"+ {THREAD_MARGIN}); {CLIENT_PROCESSES} browser processes ({args.client} clients, "
        f"permessage-deflate {deflate}) + 1 baseline process "
        f"({BASELINE_CLIENTS} clients on the simulator's player stream); RLIMIT_NOFILE {files}; "
        f"threads-max {max_threads}, "
        f"RLIMIT_NPROC {resource.getrlimit(resource.RLIMIT_NPROC)[0]}",
        flush=True,
    )
    results: dict[RunKey, dict[str, Any]] = {}
    holding = set(args.worker)
    runs = [(b, w, r) for b in args.clients for w in args.worker for r in range(1, args.repeat + 1)]
    for browsers, worker_class, run in runs:
        if worker_class not in holding:
            continue
        numbered = f", run {run} of {args.repeat}" if args.repeat > 1 else ""
        print(f"\n== {browsers} browsers, {worker_class}{numbered} ==", flush=True)
        figures: dict[str, Any] = {}
        results[browsers, worker_class, run] = figures
        try:
            lines, ok = measure(browsers, not args.no_deflate, worker_class, figures, args.client)
        except RuntimeError as failure:
            print(f"FAILED: {failure}", flush=True)
            return 1
        except (OSError, requests.RequestException) as lost:
            # The worker died under the load (gunicorn's timeout killed it): a finding.
            print(
                f"the worker did not survive {browsers} browsers under {worker_class} "
                f"({type(lost).__name__}); larger counts skipped for it",
                flush=True,
            )
            holding.discard(worker_class)
            continue
        print("\n".join(lines), flush=True)
        if not ok:
            # A scale that does not hold is a finding, not a failure of the benchmark.
            print(f"(does not hold at {browsers} browsers under {worker_class}; larger "
                  "counts skipped for it)", flush=True)  # fmt: skip
            holding.discard(worker_class)
    print("\n" + "\n".join([*table(results), *spread(results)]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
