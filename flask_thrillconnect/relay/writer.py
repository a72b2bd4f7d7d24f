"""One thread that serves every browser's socket: it writes their frames with sends that never
block, and hands what they send to their endpoints.

flask-sock gives each browser a thread (or greenlet) of its own, and waking one of them per
delivered message costs far more than the message: thousands of threads take turns at the GIL,
and each holds its stack. So the relay serves every socket from one thread instead. The hub
tells it which connections gained work (its ``on_ready`` is :meth:`SocketWriter.source_ready`);
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
import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from functools import lru_cache
from typing import Protocol

from .protocol import CLOSE_GRACE, PING_INTERVAL

__all__ = ["PING_FRAME", "Peer", "SocketWriter", "Source", "text_frame"]

logger = logging.getLogger("flask_thrillconnect.relay.writer")

#: Messages turned into frames per look at one outbox, so no browser monopolises the thread.
DRAIN_BATCH = 100
#: A ping frame (FIN + ping opcode, no payload): the browser answers with a pong.
PING_FRAME = b"\x89\x00"
#: How often the thread looks for due pings and passed deadlines.
_SCAN_INTERVAL = 1.0
#: Seconds the thread lets publishers go on once woken, before it sends: the platform sends a
#: tick as one message per jackpot (7 in the simulator's world), published one by one, and
#: gathering them gives each browser one write per tick instead of one per message
#: (``bench.relay_fanout``, 5,000 browsers under gevent: 6.6 → 4.8 µs of CPU per message).
WRITE_GATHER = 0.003


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
        "lock",
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
        #: Guards the fields below and the hand-over of the socket (:attr:`released`): held
        #: while the writer writes, so nobody queues a frame the writer will never send.
        self.lock = threading.Lock()
        self.pending = memoryview(b"")
        self.direct: deque[bytes] = deque()
        self.last_write = time.monotonic()
        #: Whether the writer has let go of the socket (closing, failed or detached).
        self.released = False
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
        with self.lock:
            if self.released:
                return False
            self.direct.append(frame)
        self.writer.ready(self)
        return True


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
        self.ready(peer)

    def detach(self, peer: Peer) -> None:
        """Forget a browser: the writer stops watching and writing its socket (which the
        caller may close next). Call it from the writer's thread (a callback)."""
        with self._lock:
            if self._peers.get(peer.source) is peer:
                del self._peers[peer.source]
            self._ready.discard(peer)
        with peer.lock:
            peer.released = True
            peer.pending = memoryview(b"")
            peer.direct.clear()
        self._watch(peer, 0)

    def set_deadline(self, peer: Peer, seconds: float) -> None:
        """Call ``peer.on_timeout`` once ``seconds`` have passed (checked about once a second)."""
        peer.deadline = time.monotonic() + seconds

    def ready(self, peer: Peer) -> None:
        """Queue ``peer`` for a flush; cheap, called by publishers under no lock of ours."""
        with self._lock:
            wake = self._queue_locked(peer)
        if wake:
            self._wake()

    def source_ready(self, source: Source) -> None:
        """The hub's ``on_ready``: ``source`` gained work or must close; flush its peer soon.

        A source not attached yet is skipped: :meth:`attach` queues a first flush anyway.
        """
        with self._lock:
            peer = self._peers.get(source)
            wake = peer is not None and self._queue_locked(peer)
        if wake:
            self._wake()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (within ``timeout``); later :meth:`attach` calls raise."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

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
        self._peers.clear()
        self._ready.clear()
        self._signaled = False
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

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
                    time.sleep(WRITE_GATHER)  # the rest of the burst, sent with it
                with self._lock:
                    work |= self._ready
                    self._ready = set()
                    self._signaled = False
                for peer in work:
                    self._flush(peer)
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

    def _call(self, callback: Callable[[], None]) -> None:
        """A browser's callback; its failure is logged and does not stop the thread."""
        try:
            callback()
        except Exception:
            logger.exception("a relay browser's callback failed")

    def _flush(self, peer: Peer) -> None:
        """Send what ``peer`` has, until done or until its socket is full; watch the socket
        for what comes next."""
        with peer.lock:
            if peer.released:
                return  # detached, or being closed by its endpoint
            closing = self._flush_locked(peer)
            if closing == "flushed":
                peer.released = True
                peer.deadline = None
            wants_write = bool(peer.pending)
        self._watch(peer, selectors.EVENT_READ | (selectors.EVENT_WRITE if wants_write else 0))
        if closing == "flushed":
            self._call(lambda: peer.on_release(True))
        elif closing == "waiting" and peer.deadline is None:
            peer.deadline = time.monotonic() + self.close_grace

    def _flush_locked(self, peer: Peer) -> str | None:
        """Write; ``None`` while open, else ``"flushed"`` (all sent: let go of the socket) or
        ``"waiting"`` (closing, frames still in flight)."""
        direct, source = peer.direct, peer.source
        emptied = False  # whether the last drain took all the outbox had
        while True:
            if not peer.pending:
                frames = list(direct)
                direct.clear()
                texts = source.drain(DRAIN_BATCH)
                emptied = len(texts) < DRAIN_BATCH
                frames.extend(map(text_frame, texts))
                if not frames:
                    return self._closing(peer)
                peer.pending = memoryview(b"".join(frames))
            try:
                sent = peer.sock.send(peer.pending)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                # The browser is gone: nothing more goes out; its endpoint reads the end.
                peer.pending = memoryview(b"")
                direct.clear()
                return self._closing(peer)
            peer.pending = peer.pending[sent:]
            peer.last_write = time.monotonic()
            if peer.pending:
                return "waiting" if peer.source.close_code is not None else None
            if emptied:
                # All sent, nothing left: no need to drain again, since whatever comes next
                # (a message into the emptied outbox, a direct frame) queues this peer anew.
                return self._closing(peer)

    @staticmethod
    def _closing(peer: Peer) -> str | None:
        return "flushed" if peer.source.close_code is not None else None

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
        now = time.monotonic()
        due = now - self.ping_interval
        with self._lock:
            peers = list(self._peers.values())
        for peer in peers:
            deadline = peer.deadline
            if deadline is not None and deadline <= now:
                peer.deadline = None
                self._expire(peer)
            elif peer.last_write <= due and not peer.pending and not peer.released:
                with peer.lock:
                    if not peer.released:
                        peer.direct.append(PING_FRAME)
                self._flush(peer)

    def _expire(self, peer: Peer) -> None:
        with peer.lock:
            giving_up = not peer.released
            peer.released = True
            peer.pending = memoryview(b"")
            peer.direct.clear()
        if giving_up:  # a closing browser that did not take its last frames in time
            self._watch(peer, selectors.EVENT_READ)
            self._call(lambda: peer.on_release(False))
        else:
            self._call(peer.on_timeout)


def _drain_wake_pipe(wake: socket.socket) -> None:
    try:
        while wake.recv(4096):
            pass
    except (BlockingIOError, OSError):
        pass
