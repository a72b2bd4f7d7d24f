"""Browser-like WebSocket clients for the relay benchmark, run in their own process.

``python -m bench.ws_clients --url WS_URL --count N [--origin ORIGIN] [--relay]`` opens ``N``
connections with the ``websockets`` asyncio client (independent of the server's
simple-websocket/wsproto), subscribes each to every ``thrillpots`` event and records, for
every ``JackpotUpdate``, the event's ``timestamp`` and the delay from it to receipt. It speaks
JSON lines with the bench that started it:

- it prints ``{"event": "ready", ...}`` once every connection is open and subscribed (a relay
  connection is ready when its ``RelayStatus`` says the upstream is connected);
- on ``{"command": "report", "windows": {phase: [start_ms, end_ms]}, "quiet": s}`` it waits
  until nothing has arrived for ``quiet`` seconds, then prints ``{"event": "report", ...}``:
  per phase, a histogram of the delays (0.1 ms bins) of the updates whose timestamp falls in
  that phase's window, plus per-connection ``WinEvent`` counts and message totals;
- on ``{"command": "stop"}`` or end of input it closes every connection and exits.

The process also exits by itself after ``--max-seconds``.

:class:`StalledBrowser` is the odd one out, used in the bench's own process: a socket that
subscribes and then never reads (wsproto over a plain socket, so nothing reads behind our back).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import sys
import threading
import time
from array import array
from collections import Counter
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request, TextMessage

SUBSCRIBE_ALL = json.dumps(
    {"SubscribeRequest": {"events": [{"source": "thrillpots", "event_type": "*"}]}}
)
#: Handshakes in flight at once: enough to connect thousands in seconds, few enough that
#: the server's listen backlog never overflows.
CONNECT_CONCURRENCY = 64
OPEN_TIMEOUT = 30.0
READY_TIMEOUT = 30.0
CLOSE_TIMEOUT = 2.0
MAX_QUIET_WAIT = 30.0


def raise_file_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard one (one descriptor per socket)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def cpu_seconds() -> float:
    """This process's user + system CPU time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Browser:
    """One connection: what it received, recorded cheaply (the process holds thousands)."""

    def __init__(self, connection: ClientConnection):
        self.connection = connection
        self.timestamps = array("q")  # JackpotUpdate timestamps (ms)
        self.delays = array("d")  # receipt minus timestamp (ms)
        self.wins = 0
        self.messages = 0
        self.closed_early = False

    async def read(self, clock: Clock) -> None:
        try:
            async for raw in self.connection:
                received_ms = time.time() * 1000
                clock.last_message = time.monotonic()
                self.messages += 1
                message = json.loads(raw)
                name = message.get("msg_name")
                if name == "JackpotUpdate":
                    self.timestamps.append(message["timestamp"])
                    self.delays.append(received_ms - message["timestamp"])
                elif name == "WinEvent":
                    self.wins += 1
        except ConnectionClosed:
            pass
        if not clock.stopping:
            self.closed_early = True


class Clock:
    """When the process last received anything, and whether it is shutting down."""

    def __init__(self) -> None:
        self.last_message = time.monotonic()
        self.stopping = False


async def open_browser(url: str, origin: str | None, relay: bool, deflate: bool) -> Browser:
    connection = await connect(
        url,
        origin=origin,  # type: ignore[arg-type]
        # Browsers offer permessage-deflate; turning it off shows what compression costs.
        compression="deflate" if deflate else None,
        open_timeout=OPEN_TIMEOUT,
        close_timeout=CLOSE_TIMEOUT,
        ping_interval=None,  # the relay pings; our pings would only add load
        max_size=2**20,
    )
    try:
        await connection.send(SUBSCRIBE_ALL)
        if relay:
            async with asyncio.timeout(READY_TIMEOUT):
                async for raw in connection:
                    message = json.loads(raw)
                    if (
                        message.get("msg_name") == "RelayStatus"
                        and message["data"].get("upstream") == "connected"
                    ):
                        break
    except BaseException:
        await connection.close()
        raise
    return Browser(connection)


async def open_all(
    url: str, origin: str | None, relay: bool, deflate: bool, count: int
) -> tuple[list[Browser], Counter[str]]:
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
    errors: Counter[str] = Counter()

    async def one() -> Browser | None:
        async with limit:
            try:
                return await open_browser(url, origin, relay, deflate)
            except Exception as exc:  # counted and reported: a benchmark says what failed
                errno = f" {exc.errno}" if isinstance(exc, OSError) else ""
                errors[type(exc).__name__ + errno] += 1
                return None

    opened = await asyncio.gather(*(one() for _ in range(count)))
    return [browser for browser in opened if browser is not None], errors


def phase_report(browsers: list[Browser], windows: dict[str, list[int]]) -> dict[str, Any]:
    """Delay histograms (0.1 ms bins) of the updates stamped inside each phase's window."""
    phases: dict[str, Any] = {}
    for phase, (start_ms, end_ms) in windows.items():
        histogram: Counter[int] = Counter()
        for browser in browsers:
            for timestamp, delay in zip(browser.timestamps, browser.delays, strict=True):
                if start_ms <= timestamp < end_ms:
                    histogram[round(delay * 10)] += 1
        phases[phase] = {str(bin_): n for bin_, n in histogram.items()}
    return phases


def stdin_lines() -> asyncio.Queue[str]:
    """Lines of standard input, read by a daemon thread (so a blocked read never holds exit)."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "")

    threading.Thread(target=pump, name="stdin", daemon=True).start()
    return lines


async def read_command(lines: asyncio.Queue[str], deadline: float) -> dict[str, Any] | None:
    """The bench's next command; ``None`` at end of input or past the deadline."""
    try:
        line = await asyncio.wait_for(lines.get(), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        return None
    return json.loads(line) if line.strip() else None


def emit(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


async def run(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.max_seconds
    started = time.monotonic()
    lines = stdin_lines()
    browsers, errors = await open_all(
        args.url, args.origin, args.relay, not args.no_deflate, args.count
    )
    clock = Clock()
    readers = [asyncio.create_task(browser.read(clock)) for browser in browsers]
    emit(
        {
            "event": "ready",
            "connected": len(browsers),
            "failed": sum(errors.values()),
            "errors": dict(errors),
            "connect_seconds": round(time.monotonic() - started, 2),
            "cpu_seconds": cpu_seconds(),
        }
    )
    try:
        while (command := await read_command(lines, deadline)) is not None:
            if command["command"] == "report":
                quiet_until = time.monotonic() + MAX_QUIET_WAIT
                while (
                    time.monotonic() - clock.last_message < command["quiet"]
                    and time.monotonic() < quiet_until
                ):
                    await asyncio.sleep(0.1)
                emit(
                    {
                        "event": "report",
                        "phases": phase_report(browsers, command["windows"]),
                        "wins": dict(Counter(browser.wins for browser in browsers)),
                        "messages": sum(browser.messages for browser in browsers),
                        "closed_early": sum(browser.closed_early for browser in browsers),
                        "cpu_seconds": cpu_seconds(),
                    }
                )
            elif command["command"] == "stop":
                break
    finally:
        clock.stopping = True
        await asyncio.gather(
            *(browser.connection.close() for browser in browsers), return_exceptions=True
        )
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


class StalledBrowser:
    """A browser that connects, subscribes to everything and then never reads.

    Its receive buffer is made as small as the kernel allows, so the relay's writes to it
    block after a few kilobytes instead of after megabytes of loopback buffering.
    """

    RECEIVE_BUFFER = 4096

    def __init__(self, host: str, port: int, path: str, origin: str, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RECEIVE_BUFFER)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        protocol = WSConnection(ConnectionType.CLIENT)
        request = Request(
            host=f"{host}:{port}", target=path, extra_headers=[(b"origin", origin.encode())]
        )
        self.sock.sendall(protocol.send(request))
        deadline = time.monotonic() + timeout
        while not self._accepted(protocol):
            if time.monotonic() > deadline:
                raise TimeoutError("the relay did not accept the stalled browser")
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("the relay closed the stalled browser's handshake")
            protocol.receive_data(data)
        self.sock.sendall(protocol.send(TextMessage(data=SUBSCRIBE_ALL)))

    @staticmethod
    def _accepted(protocol: WSConnection) -> bool:
        for event in protocol.events():
            if isinstance(event, RejectConnection):
                raise ConnectionError(f"the relay refused the stalled browser: {event.status_code}")
            if isinstance(event, AcceptConnection):
                return True
        return False

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def close(self) -> None:
        """Drop the TCP connection without a close handshake (it never reads one anyway)."""
        self.sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--origin")
    parser.add_argument("--relay", action="store_true", help="wait for the relay's status")
    parser.add_argument("--no-deflate", action="store_true", help="no permessage-deflate")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()
    raise_file_limit()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
