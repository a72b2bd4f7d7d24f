"""The relay's socket thread: what one pass over every browser costs, against bare sends.

For 1,000 and 5,000 browsers (socket pairs in this process, one end served by a real
:class:`~flask_thrillconnect.relay.writer.SocketWriter`, the other read between rounds), the
hub publishes a tick of 7 ``JackpotUpdate`` s and the writer's pass sends them: the pass's
duration per browser is compared with a baseline measured in the same run, a loop sending the
same bytes to the same sockets (the least a pass can cost: one ``send`` per browser).

The ratio is the writer's own cost (draining the outbox, its bookkeeping) on top of the
syscall. Unix socket pairs are cheaper than the loopback TCP of ``bench.relay_fanout``, so the
ratio here is larger than in a real portal, where the ``send`` weighs more.

Run: ``.venv/bin/python -m bench.writer_pass [--gevent]`` (``--gevent``: monkey-patched, as
under gunicorn's gevent worker, where the writer is a greenlet and its locks gevent's).
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "--gevent" in sys.argv:
    # Before socket and threading are imported anywhere, as gunicorn's gevent worker does.
    from gevent import monkey

    monkey.patch_all()

import argparse
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.hub_fanout import jackpot_update
from bench.ws_clients import raise_file_limit
from flask_thrillconnect.relay import BROADCAST, Connection, RelayHub
from flask_thrillconnect.relay.writer import Peer, SocketWriter

BROWSER_COUNTS = (1_000, 5_000)
UPDATES_PER_TICK = 7
ROUNDS = 9
PASS_TIMEOUT = 10.0


class TimedWriter(SocketWriter):
    """A writer that records how long each pass over more than one browser took."""

    def __init__(self) -> None:
        super().__init__(name="bench-writer")
        self.passes: list[tuple[int, float]] = []
        self.pass_done = threading.Event()

    def _pass(self, work: set[Peer]) -> None:
        started = time.perf_counter()
        super()._pass(work)
        if len(work) > 1:
            self.passes.append((len(work), time.perf_counter() - started))
            self.pass_done.set()


@contextmanager
def served_browsers(
    count: int,
) -> Iterator[tuple[RelayHub, TimedWriter, list[tuple[socket.socket, socket.socket]]]]:
    """``count`` subscribed connections, each on a socket pair (served end, browser end)."""
    writer = TimedWriter()
    hub = RelayHub(on_ready=writer.sources_ready, on_published=writer.published)
    pairs: list[tuple[socket.socket, socket.socket]] = []
    try:
        for _ in range(count):
            served, browser = socket.socketpair()
            served.setblocking(False)
            browser.setblocking(False)
            pairs.append((served, browser))
            conn: Connection = hub.connect([BROADCAST])
            conn.subscribe([("thrillpots", "*")])
            writer.attach(
                Peer(
                    writer,
                    served,
                    conn,
                    on_input=lambda: None,
                    on_release=lambda _flushed: None,
                    on_timeout=lambda: None,
                )
            )
        yield hub, writer, pairs
    finally:
        hub.close()
        writer.close()
        for served, browser in pairs:
            served.close()
            browser.close()


def read_all(browsers: list[socket.socket]) -> int:
    """Read what waits on every socket; the bytes read."""
    read = 0
    for browser in browsers:
        try:
            while chunk := browser.recv(1 << 16):
                read += len(chunk)
        except BlockingIOError:
            pass
    return read


def wait_for_pass(writer: TimedWriter, count: int) -> float:
    """Seconds per browser of the next pass over all ``count`` browsers."""
    deadline = time.monotonic() + PASS_TIMEOUT
    while time.monotonic() < deadline:
        writer.pass_done.wait(max(0.0, deadline - time.monotonic()))
        writer.pass_done.clear()
        if writer.passes and writer.passes[-1][0] >= count:
            return writer.passes[-1][1] / writer.passes[-1][0]
    raise RuntimeError(f"no pass over {count} browsers within {PASS_TIMEOUT} s")


def measure(count: int) -> tuple[float, float]:
    """Median seconds per browser: the writer's pass, and bare sends of the same bytes."""
    with served_browsers(count) as (hub, writer, pairs):
        served = [pair[0] for pair in pairs]
        browsers = [pair[1] for pair in pairs]
        time.sleep(0.5)  # the first flushes (connect-time statuses) are not a tick's pass
        read_all(browsers)
        passes, bare = [], []
        for round_number in range(ROUNDS):
            writer.passes.clear()
            for instance in range(UPDATES_PER_TICK):
                hub.publish(jackpot_update(instance, float(round_number)), BROADCAST)
            passes.append(wait_for_pass(writer, count))
            # The baseline: as many bytes as each browser got, to the same sockets.
            payload = b"x" * (read_all(browsers) // count)
            started = time.perf_counter()
            for sock in served:
                sock.send(payload)
            bare.append((time.perf_counter() - started) / count)
            read_all(browsers)
        return statistics.median(passes), statistics.median(bare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gevent", action="store_true", help="monkey-patched by gevent")
    parser.parse_args()  # --gevent took effect as the module was loaded
    raise_file_limit()
    print(f"{'browsers':>9} {'pass per browser':>17} {'bare send':>10} {'ratio':>6}")
    for count in BROWSER_COUNTS:
        per_browser, bare = measure(count)
        print(
            f"{count:>9} {per_browser * 1e6:>14.2f} us {bare * 1e6:>7.2f} us"
            f" {per_browser / bare:>6.2f}"
        )


if __name__ == "__main__":
    main()
