"""One thread that serves every browser's socket: it writes their frames with sends that never
block, and hands what they send to their endpoints.

flask-sock gives each browser a thread (or greenlet) of its own, and waking one of them per
delivered message costs far more than the message: thousands of threads take turns at the GIL,
and each holds its stack. So the relay serves every socket from one thread instead. The hub
tells it which connections gained work (its ``on_ready`` is :meth:`SocketWriter.sources_ready`);
it sends their frames on the non-blocking socket, keeps what a full socket did not take, and
waits for that socket to drain before sending more. A slow browser only ever holds up its own
bytes; its outbox conflates or overflows (1013) in the hub meanwhile. When a socket has input,
the thread calls the browser's ``on_input`` (see :mod:`~flask_thrillconnect.relay.endpoint`),
which reads it without waiting.

While the writer owns a socket, nobody else writes to it: frames from elsewhere (an answer to
one browser, a pong) are queued with :meth:`Peer.send_frame` and go out whole, between the
writer's own frames. Once a closing browser's last frame went out, the writer lets go of the
socket (``on_release``): the endpoint sends the close frame.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from functools import lru_cache
from typing import Protocol

from ..servers import yielder
from .protocol import CLOSE_GRACE, PING_INTERVAL

__all__ = [
    "PING_FRAME",
    "Peer",
    "SocketWriter",
    "Source",
    "burst_pause",
    "gather_until",
    "text_frame",
]

logger = logging.getLogger("flask_thrillconnect.relay.writer")

#: Messages turned into frames per look at one outbox, so no browser monopolises the thread.
DRAIN_BATCH = 100
#: A ping frame (FIN + ping opcode, no payload): the browser answers with a pong.
PING_FRAME = b"\x89\x00"
#: How often the thread looks for due pings and passed deadlines.
_SCAN_INTERVAL = 1.0
# The platform sends a tick as one message per jackpot (7 in the simulator's world), published
# one by one a little apart. Once woken, the thread lets publishers go on until the burst ends,
# so each browser gets the tick in one write instead of one per message (``bench.relay_fanout``,
# 5,000 browsers under gevent: 6.6 → 4.8 µs of CPU per message), and in one pass over the
# browsers instead of two. How long it waits grows with what that pass will cost: a message
# that misses a pass waits for all of it and then for a second one.
#: Seconds the thread waits once woken, at least.
WRITE_GATHER = 0.001
#: A burst has ended once nothing was published for this share of the pass's cost...
GATHER_QUIET_SHARE = 0.1
#: ...within these bounds (seconds): a pause longer than a few ms is not within a burst.
GATHER_QUIET_BOUNDS = (0.002, 0.004)
#: The longest wait for a burst's end, as a share of the pass's cost...
GATHER_SHARE = 0.5
#: ...and whatever the pass costs.
GATHER_MAX = 0.025
#: Bursts remembered. The platform's ticks repeat in size (one message per jackpot): once the
#: burst under way is as large as the largest of these, it is taken as complete and the pass
#: starts without waiting for the pause after it. A larger burst splits once, and is learned.
BURST_MEMORY = 8
#: Browsers flushed between two yields of the thread during a pass (see
#: :func:`~flask_thrillconnect.servers.yielder`): under gevent the pass would otherwise hold the
#: whole worker (every request, the upstream reader) for its length, a tenth of a second at
#: 10,000 browsers; and a message published meanwhile still reaches the browsers the pass has
#: not served yet.
PASS_YIELD_EVERY = 64
#: The first guess of a flush's cost (seconds per browser), until passes have measured it.
_FLUSH_COST_GUESS = 5e-6
#: Passes over fewer browsers than this do not update the measured cost (too noisy).
_FLUSH_COST_MIN_PASS = 32


class _Flush(enum.Enum):
    """What a flush left behind."""

    #: The source is open: served on.
    OPEN = "open"
    #: The source is closing, and frames still wait for the socket to take them.
    IN_FLIGHT = "in flight"
    #: The source is closing and every frame went out: the writer lets go of the socket.
    DONE = "done"


# Looked up per browser per pass: module globals are cheaper than an enum's attributes.
_OPEN, _IN_FLIGHT, _DONE = _Flush.OPEN, _Flush.IN_FLIGHT, _Flush.DONE
_READ = selectors.EVENT_READ
_READ_WRITE = selectors.EVENT_READ | selectors.EVENT_WRITE


class Source(Hashable, Protocol):
    """What the writer sends from: a hub connection (see :class:`.hub.Connection`)."""

    @property
    def close_code(self) -> int | None:
        """``None`` while open; else the code its browser is to be closed with."""
        ...

    def drain(self, max_items: int) -> list[str]:
        """Up to ``max_items`` texts to send, oldest first; ``[]`` once closing."""
        ...


@lru_cache(maxsize=4096)
def text_frame(text: str) -> bytes:
    """The WebSocket frame of one relayed message, built once for every browser.

    Server frames are unmasked and the relay never compresses, so the bytes on the
    wire are the same for every connection: the hub hands the same ``str`` to all of
    them, and this cache turns it into a frame once (``str`` caches its own hash).
    """
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)  # FIN + text opcode
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


class Peer:
    """One browser socket as the writer sees it, once given to :meth:`SocketWriter.attach`.

    The callbacks run on the writer's thread and must not wait: ``on_input()`` when the socket
    has something to read; ``on_release(flushed)`` once the writer has let go of the socket
    because its source asks to close (``flushed``: every frame went out, the close frame may
    follow; else the browser did not take them within ``CLOSE_GRACE``); ``on_timeout()`` when
    a deadline set with :meth:`SocketWriter.set_deadline` has passed.
    """

    __slots__ = (
        "deadline",
        "direct",
        "events",
        "last_write",
        "on_input",
        "on_release",
        "on_timeout",
        "pending",
        "released",
        "sock",
        "source",
        "writer",
    )

    def __init__(
        self,
        writer: SocketWriter,
        sock: socket.socket,
        source: Source,
        *,
        on_input: Callable[[], None],
        on_release: Callable[[bool], None],
        on_timeout: Callable[[], None],
    ) -> None:
        self.writer = writer
        self.sock = sock
        self.source = source
        self.on_input = on_input
        self.on_release = on_release
        self.on_timeout = on_timeout
        # Guarded by the writer's lock: frames queued from elsewhere, and the hand-over of the
        # socket, so that nobody queues a frame the writer will never send.
        self.direct: deque[bytes] = deque()
        #: Whether the writer has let go of the socket (closing, failed or detached).
        self.released = False
        # The writer's thread alone touches the rest.
        #: Bytes taken from the source that the socket has not taken yet.
        self.pending: bytes | memoryview = b""
        self.last_write = time.monotonic()
        #: When the writer gives up on a closing browser, or calls ``on_timeout``.
        self.deadline: float | None = None
        #: The selector events it is registered for (0: not registered).
        self.events = 0

    def send_text(self, text: str) -> None:
        """Queue a message for this browser alone (an ``Error`` answer, say)."""
        self.send_frame(text_frame(text))

    def send_frame(self, frame: bytes) -> bool:
        """Queue a whole frame, to go out after the frames in flight.

        :returns: ``False`` once the writer has let go of the socket (it is being closed).
        """
        return self.writer.queue_frame(self, frame)


class SocketWriter:
    """The socket thread of one relay; started on first use, and afresh after a fork."""

    def __init__(
        self,
        *,
        ping_interval: float = PING_INTERVAL,
        close_grace: float = CLOSE_GRACE,
        name: str = "thrillconnect-writer",
    ) -> None:
        self.ping_interval = ping_interval
        self.close_grace = close_grace
        self.name = name
        self._lock = threading.Lock()
        self._ready: set[Peer] = set()
        self._peers: dict[Source, Peer] = {}
        self._signaled = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        # Kept by :meth:`published` (the publishing thread) under the lock, for the gather:
        #: when the hub last published;
        self._last_publish = 0.0
        #: the messages published in the burst under way (or the last one);
        self._burst = 0
        #: the sizes of the bursts before it.
        self._bursts: deque[int] = deque(maxlen=BURST_MEMORY)
        #: Set once the burst under way reached the expected size: it ends the gather's wait.
        self._burst_complete = threading.Event()
        #: When the current pass started (monotonic): the writes' time.
        self._now = time.monotonic()
        #: Seconds one browser's flush costs, smoothed over the passes (for the gather).
        self._flush_cost = _FLUSH_COST_GUESS
        #: The last batch of texts turned into bytes, and those bytes: most browsers in a
        #: pass take the same messages, so most flushes reuse them (the thread's alone).
        self._last_texts: list[str] = []
        self._last_payload = b""
        #: How a pass lets the rest of the process run, for the server model of the process
        #: that started the thread.
        self._yield = yielder()

    # -- the browsers' side -------------------------------------------------------------------

    def attach(self, peer: Peer) -> None:
        """Serve ``peer`` from the writer's thread: write what its source has, and call its
        ``on_input`` when its socket has input. Its first flush is queued; the callbacks may
        run before this returns.

        :raises RuntimeError: the writer is closed (the relay is shutting down).
        """
        with self._lock:
            self._ensure_started_locked()
            self._peers[peer.source] = peer
            wake = self._queue_locked(peer)
        if wake:
            self._wake()

    def detach(self, peer: Peer) -> None:
        """Forget a browser: the writer stops watching and writing its socket (which the
        caller may close next). Call it from the writer's thread (a callback)."""
        with self._lock:
            if self._peers.get(peer.source) is peer:
                del self._peers[peer.source]
            self._ready.discard(peer)
            peer.released = True
            peer.direct.clear()
        peer.pending = b""
        self._watch(peer, 0)

    def set_deadline(self, peer: Peer, seconds: float) -> None:
        """Call ``peer.on_timeout`` once ``seconds`` have passed (checked about once a second)."""
        peer.deadline = time.monotonic() + seconds

    def queue_frame(self, peer: Peer, frame: bytes) -> bool:
        """:meth:`Peer.send_frame`: queue ``frame`` unless the writer has let go of ``peer``."""
        with self._lock:
            if peer.released:
                return False
            peer.direct.append(frame)
            wake = self._queue_locked(peer)
        if wake:
            self._wake()
        return True

    def sources_ready(self, sources: Iterable[Source]) -> None:
        """The hub's ``on_ready``: ``sources`` gained work or must close; flush their peers
        soon. One call for a whole fan-out, so the lock is taken once, not per browser.

        A source not attached yet is skipped: :meth:`attach` queues a first flush anyway.
        """
        with self._lock:
            peers, ready = self._peers, self._ready
            for source in sources:
                peer = peers.get(source)
                if peer is not None:
                    ready.add(peer)
            wake = bool(ready) and not self._signaled
            if wake:
                self._signaled = True
        if wake:
            self._wake()

    def published(self) -> None:
        """The hub's ``on_published``: a message went into the outboxes. A woken thread
        waits for publishing to pause, or for the burst to reach the size of recent ones,
        before its pass (see :func:`gather_until`)."""
        now = time.monotonic()
        with self._lock:
            pause = burst_pause(len(self._peers) * self._flush_cost)
            if now - self._last_publish > pause:  # a burst ended before this message
                if self._burst:
                    self._bursts.append(self._burst)
                self._burst = 0
            self._burst += 1
            self._last_publish = now
            complete = self._burst == self._expected_burst_locked()
        if complete:
            self._burst_complete.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (within ``timeout``); later :meth:`attach` calls raise."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def flush_cost(self) -> float:
        """Seconds one browser takes in a pass (its send and the writer's work), smoothed over
        the passes over 32 browsers or more; a first guess until there was one."""
        return self._flush_cost

    @property
    def expected_burst(self) -> int:
        """Messages a burst is expected to have: the largest of the last
        :data:`BURST_MEMORY` (0 until one has ended)."""
        with self._lock:
            return self._expected_burst_locked()

    @property
    def peers(self) -> int:
        """Browser sockets the writer serves now (closing ones included)."""
        with self._lock:
            return len(self._peers)

    # -- the thread -------------------------------------------------------------------------

    def _ensure_started_locked(self) -> None:
        if self._closed:
            raise RuntimeError("the relay writer is closed")
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        # First use, or a forked child: the parent's thread and sockets are not ours.
        self._pid = os.getpid()
        self._yield = yielder()  # gevent's worker patches the standard library after a fork
        self._peers.clear()
        self._ready.clear()
        self._signaled = False
        # Made here, not in __init__: a writer built before gevent patched the standard
        # library (gunicorn --preload) would otherwise wait on an OS-level event.
        self._burst_complete = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _expected_burst_locked(self) -> int:
        return max(self._bursts, default=0)

    def _queue_locked(self, peer: Peer) -> bool:
        """Queue ``peer``; whether the thread still needs a wake-up (``_lock`` held)."""
        self._ready.add(peer)
        if self._signaled:
            return False
        self._signaled = True
        return True

    def _wake(self) -> None:
        wake = self._wake_w
        if wake is not None:
            with contextlib.suppress(OSError):  # already signalled (full), or closing
                wake.send(b"\0")

    def _run(self) -> None:
        selector, wake_r = self._selector, self._wake_r
        assert selector is not None
        assert wake_r is not None
        next_scan = time.monotonic() + _SCAN_INTERVAL
        try:
            while not self._closed:
                timeout = max(0.0, next_scan - time.monotonic())
                work: set[Peer] = set()
                readable: list[Peer] = []
                woken = False
                for key, events in selector.select(timeout):
                    peer = key.data
                    if peer is None:
                        _drain_wake_pipe(wake_r)
                        woken = True
                        continue
                    if events & selectors.EVENT_READ:
                        readable.append(peer)
                    if events & selectors.EVENT_WRITE:
                        work.add(peer)
                for peer in readable:
                    self._call(peer.on_input)
                if woken:
                    self._gather()
                with self._lock:
                    work |= self._ready
                    self._ready = set()
                    self._signaled = False
                self._pass(work)
                if time.monotonic() >= next_scan:
                    self._scan()
                    next_scan = time.monotonic() + _SCAN_INTERVAL
        except Exception:
            logger.exception("the relay writer stopped")
        finally:
            selector.close()
            wake_r.close()
            if self._wake_w is not None:
                self._wake_w.close()

    def _gather(self) -> None:
        """Let publishers go on before a pass, so that it sends the rest of their burst too
        (see :func:`gather_until`)."""
        started = time.monotonic()
        with self._lock:
            expected_pass = len(self._ready) * self._flush_cost
        recent = started - burst_pause(expected_pass)
        self._burst_complete.clear()
        while True:
            with self._lock:
                last_publish = self._last_publish
                # Only a burst still under way counts: a wake-up may come before the new
                # burst's first message is counted, while the last burst's count is complete.
                expected = self._expected_burst_locked()
                complete = last_publish >= recent and self._burst >= expected > 0
            until = gather_until(started, last_publish, expected_pass, burst_complete=complete)
            now = time.monotonic()
            if now >= until:
                return
            self._burst_complete.wait(until - now)

    def _pass(self, work: set[Peer]) -> None:
        """Flush every peer in ``work``, and learn what a flush costs."""
        started = time.perf_counter()
        self._now = time.monotonic()  # the pass's time: a write's, to a second's precision
        flush, yield_ = self._flush, self._yield
        for served, peer in enumerate(work, 1):
            flush(peer)
            if not served % PASS_YIELD_EVERY:
                yield_()
        if len(work) >= _FLUSH_COST_MIN_PASS:
            cost = (time.perf_counter() - started) / len(work)
            self._flush_cost += (cost - self._flush_cost) / 4

    def _call(self, callback: Callable[[], None]) -> None:
        """A browser's callback; its failure is logged and does not stop the thread."""
        try:
            callback()
        except Exception:
            logger.exception("a relay browser's callback failed")

    def _flush(self, peer: Peer) -> None:
        """Send what ``peer`` has, until done or until its socket is full; watch the socket
        for what comes next."""
        if peer.released:  # detached, or being closed by its endpoint (set by this thread)
            return
        outcome = self._write(peer)
        if outcome is _DONE:
            with self._lock:
                if peer.direct:  # queued meanwhile, and the peer with it: the next pass
                    outcome = _IN_FLIGHT
                else:
                    peer.released = True
                    peer.deadline = None
        events = _READ_WRITE if peer.pending else _READ
        if peer.events != events:
            self._watch(peer, events)
        if outcome is _OPEN:
            return
        if outcome is _DONE:
            self._call(lambda: peer.on_release(True))
        elif peer.deadline is None:
            peer.deadline = time.monotonic() + self.close_grace

    def _write(self, peer: Peer) -> _Flush:
        """Send until the socket is full or nothing is left."""
        source = peer.source
        emptied = False  # whether the last drain took all the outbox had
        while True:
            pending = peer.pending
            if not pending:
                texts = source.drain(DRAIN_BATCH)
                emptied = len(texts) < DRAIN_BATCH
                # Read without the lock: whoever queues a frame after this queues the peer
                # too, and the next pass sends it.
                if peer.direct:
                    with self._lock:
                        frames = [*peer.direct]
                        peer.direct.clear()
                    pending = b"".join([*frames, *map(text_frame, texts)])
                elif texts:
                    pending = self._payload(texts)
                else:
                    return self._closing(peer)
            try:
                sent = peer.sock.send(pending)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                # The browser is gone: nothing more goes out; its endpoint reads the end.
                peer.pending = b""
                with self._lock:
                    peer.direct.clear()
                return self._closing(peer)
            # A partial send keeps the rest as a view: no copy of what is left.
            peer.pending = memoryview(pending)[sent:] if sent < len(pending) else b""
            peer.last_write = self._now
            if peer.pending:
                return _OPEN if source.close_code is None else _IN_FLIGHT
            if emptied:
                # All sent, nothing left: no need to drain again, since whatever comes next
                # (a message into the emptied outbox, a direct frame) queues this peer anew.
                return self._closing(peer)

    def _payload(self, texts: list[str]) -> bytes:
        """The frames of ``texts``, joined; the last batch's bytes when it is the same one."""
        if texts != self._last_texts:  # the same str objects compare by identity: cheap
            self._last_payload = b"".join(map(text_frame, texts))
            self._last_texts = texts
        return self._last_payload

    @staticmethod
    def _closing(peer: Peer) -> _Flush:
        """Nothing left to send: done if the source is closing."""
        return _OPEN if peer.source.close_code is None else _DONE

    def _watch(self, peer: Peer, events: int) -> None:
        """Register ``peer``'s socket for ``events`` (0: not at all); the thread's alone."""
        if peer.events == events:
            return
        selector = self._selector
        assert selector is not None
        try:
            if not events:
                selector.unregister(peer.sock)
            elif peer.events:
                selector.modify(peer.sock, events, peer)
            else:
                selector.register(peer.sock, events, peer)
        except (KeyError, ValueError, OSError):
            pass  # a socket that closed meanwhile
        peer.events = events

    def _scan(self) -> None:
        """Ping idle browsers; give up on closing ones past their grace; fire deadlines."""
        now = self._now = time.monotonic()
        due = now - self.ping_interval
        with self._lock:
            peers = list(self._peers.values())
        for peer in peers:
            deadline = peer.deadline
            if deadline is not None and deadline <= now:
                peer.deadline = None
                self._expire(peer)
            elif peer.last_write <= due and not peer.pending and not peer.released:
                peer.pending = PING_FRAME  # sent first, then whatever the source has
                self._flush(peer)

    def _expire(self, peer: Peer) -> None:
        with self._lock:
            giving_up = not peer.released
            peer.released = True
            peer.direct.clear()
        peer.pending = b""
        if giving_up:  # a closing browser that did not take its last frames in time
            self._watch(peer, selectors.EVENT_READ)
            self._call(lambda: peer.on_release(False))
        else:
            self._call(peer.on_timeout)


def burst_pause(expected_pass: float) -> float:
    """The pause in publishing that ends a burst, before a pass of ``expected_pass`` seconds:
    :data:`GATHER_QUIET_SHARE` of it, within :data:`GATHER_QUIET_BOUNDS`."""
    shortest, longest = GATHER_QUIET_BOUNDS
    return min(longest, max(shortest, GATHER_QUIET_SHARE * expected_pass))


def gather_until(
    started: float, last_publish: float, expected_pass: float, *, burst_complete: bool = False
) -> float:
    """When a writer woken at ``started`` begins its pass (monotonic seconds).

    At once if the burst under way is as large as recent ones (``burst_complete``). Else it
    waits :data:`WRITE_GATHER`, then until publishing has paused (``last_publish``: the
    latest publish yet) for :func:`burst_pause` of ``expected_pass`` (the seconds the pass
    will take), but no longer than :data:`GATHER_SHARE` of ``expected_pass`` or
    :data:`GATHER_MAX`.
    """
    if burst_complete:
        return started
    end = started + min(GATHER_MAX, max(WRITE_GATHER, GATHER_SHARE * expected_pass))
    return min(end, max(started + WRITE_GATHER, last_publish + burst_pause(expected_pass)))


def _drain_wake_pipe(wake: socket.socket) -> None:
    try:
        while wake.recv(4096):
            pass
    except (BlockingIOError, OSError):
        pass
