"""One thread that writes every browser's frames, with sends that never block.

flask-sock gives each browser a thread of its own, and waking one of them per
delivered message costs far more than the message: thousands of threads take
turns at the GIL. So the relay writes from one thread instead. The hub tells it
which connections gained work (its ``on_ready`` is :meth:`SocketWriter.source_ready`);
it sends their frames with ``MSG_DONTWAIT`` (the socket stays blocking for the
WebSocket library's reader), keeps what a full socket did not take, and waits for
that socket to drain before sending more. A slow browser only ever holds up its own
bytes; its outbox conflates or overflows (1013) in the hub meanwhile. The browser's
own thread is left with what it is good at: reading the browser's requests and
closing the socket.

While the writer owns a socket, nobody else writes to it: frames from elsewhere (an
answer to one browser, the library's pong and close replies) are queued with
:meth:`Peer.send_frame` and go out whole, between the writer's own frames.
"""

from __future__ import annotations

import contextlib
import functools
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

from .protocol import PING_INTERVAL

__all__ = ["PING_FRAME", "Peer", "SocketWriter", "Source", "text_frame"]

logger = logging.getLogger("flask_thrillconnect.relay.writer")

#: Messages turned into frames per look at one outbox, so no browser monopolises the thread.
DRAIN_BATCH = 100
#: A ping frame (FIN + ping opcode, no payload): the browser answers with a pong.
PING_FRAME = b"\x89\x00"
#: How often idle connections are checked for a due ping.
_PING_SCAN_INTERVAL = 1.0
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
    """One browser socket as the writer sees it, from :meth:`SocketWriter.attach`.

    When its source asks to close, the writer finishes what is in flight, stops
    touching the socket (:attr:`released`) and calls ``on_release``: the browser's own
    thread then sends the close frame.
    """

    def __init__(
        self,
        writer: SocketWriter,
        sock: socket.socket,
        source: Source,
        on_release: Callable[[], None],
        send: Callable[[memoryview], int] | None = None,
    ) -> None:
        self.writer = writer
        self.sock = sock
        #: Sends without waiting: the bytes taken; raises BlockingIOError when full.
        self.send = send or functools.partial(_send_dontwait, sock)
        self.source = source
        self.on_release = on_release
        #: Guards the fields below and the hand-over of the socket (:attr:`released`): held
        #: while the writer writes, so nobody queues a frame the writer will never send.
        self.lock = threading.Lock()
        self.pending = memoryview(b"")
        self.direct: deque[bytes] = deque()
        self.last_write = time.monotonic()
        self.waiting_writable = False
        #: Set once the writer has let go of the socket (closing, failed or detached).
        self.released = threading.Event()

    def send_text(self, text: str) -> None:
        """Queue a message for this browser alone (an ``Error`` answer, say)."""
        self.send_frame(text_frame(text))

    def send_frame(self, frame: bytes) -> bool:
        """Queue a whole frame, to go out after the frames in flight.

        :returns: ``False`` once the writer has let go of the socket: the caller then
            writes it itself.
        """
        with self.lock:
            if self.released.is_set():
                return False
            self.direct.append(frame)
        self.writer.ready(self)
        return True


class SocketWriter:
    """The writer thread of one relay; started on first use, and afresh after a fork."""

    def __init__(
        self, *, ping_interval: float = PING_INTERVAL, name: str = "thrillconnect-writer"
    ) -> None:
        self.ping_interval = ping_interval
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

    def attach(
        self,
        sock: socket.socket,
        source: Source,
        on_release: Callable[[], None],
        send: Callable[[memoryview], int] | None = None,
    ) -> Peer:
        """Start writing what ``source`` has to ``sock``; its first flush is already queued.

        :param sock: the browser's connected socket, left blocking for its reader.
        :param send: how to send on it without waiting (the server's own way, see
            :func:`~flask_thrillconnect.sockets.nonblocking_send`); default ``send`` with
            ``MSG_DONTWAIT``.
        :param source: the hub connection whose outbox feeds it.
        :param on_release: called (from the writer thread) once the writer has let go of the
            socket because ``source`` asks to close: the browser's thread sends the close.
        :raises RuntimeError: the writer is closed (the relay is shutting down).
        """
        peer = Peer(self, sock, source, on_release, send)
        with self._lock:
            self._ensure_started_locked()
            self._peers[source] = peer
        self.ready(peer)
        return peer

    def detach(self, peer: Peer) -> bytes:
        """Forget a browser (its thread is leaving); the writer stops touching its socket.

        :returns: what the writer still had for it: the rest of a frame it began, then whole
            frames. Writing them ends the stream on a frame boundary, so a close frame can
            follow; ``b""`` when nothing was left.
        """
        with self._lock:
            if self._peers.get(peer.source) is peer:
                del self._peers[peer.source]
        with peer.lock:
            peer.released.set()
            leftover = bytes(peer.pending) + b"".join(peer.direct)
            peer.pending = memoryview(b"")
            peer.direct.clear()
        # Once more through the thread, which stops watching the socket.
        self.ready(peer)
        return leftover

    def ready(self, peer: Peer) -> None:
        """Queue ``peer`` for a flush; cheap, called by publishers under no lock of ours."""
        with self._lock:
            wake = self._queue_locked(peer)
        if wake:
            self._wake()

    def send_frame(self, source: Source, frame: bytes) -> bool:
        """Queue a whole frame for ``source``'s socket, after the frames in flight.

        :returns: ``False`` when the writer does not own that socket (not attached yet, or
            let go of): the caller then writes the frame itself.
        """
        with self._lock:
            peer = self._peers.get(source)
        return peer is not None and peer.send_frame(frame)

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
        next_ping_scan = time.monotonic() + _PING_SCAN_INTERVAL
        try:
            while not self._closed:
                timeout = max(0.0, next_ping_scan - time.monotonic())
                work: set[Peer] = set()
                woken = False
                for key, _ in selector.select(timeout):
                    if key.data is None:
                        _drain_wake_pipe(wake_r)
                        woken = True
                    else:
                        work.add(key.data)
                if woken:
                    time.sleep(WRITE_GATHER)  # the rest of the burst, sent with it
                with self._lock:
                    work |= self._ready
                    self._ready = set()
                    self._signaled = False
                for peer in work:
                    self._flush(peer)
                if time.monotonic() >= next_ping_scan:
                    self._ping_idle_peers()
                    next_ping_scan = time.monotonic() + _PING_SCAN_INTERVAL
        except Exception:
            logger.exception("the relay writer stopped")
        finally:
            selector.close()
            wake_r.close()
            if self._wake_w is not None:
                self._wake_w.close()

    def _flush(self, peer: Peer) -> None:
        """Send what ``peer`` has, until done or until its socket is full."""
        with peer.lock:
            if peer.released.is_set():
                self._want_writable(peer, False)  # detached while it waited to write
            else:
                self._flush_locked(peer)

    def _flush_locked(self, peer: Peer) -> None:
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
                    self._finish_flush(peer)
                    return
                peer.pending = memoryview(b"".join(frames))
            try:
                sent = peer.send(peer.pending)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._release(peer)  # the browser is gone; its thread will notice
                return
            peer.pending = peer.pending[sent:]
            peer.last_write = time.monotonic()
            if peer.pending:
                self._want_writable(peer, True)
                return
            if emptied:
                # All sent, nothing left: no need to drain again, since whatever comes next
                # (a message into the emptied outbox, a direct frame) queues this peer anew.
                self._finish_flush(peer)
                return

    def _finish_flush(self, peer: Peer) -> None:
        """``peer`` has nothing left to send: stop watching its socket, and let it go if its
        source asks to close."""
        self._want_writable(peer, False)
        if peer.source.close_code is not None:
            self._release(peer)

    def _want_writable(self, peer: Peer, wanted: bool) -> None:
        if peer.waiting_writable == wanted:
            return
        selector = self._selector
        assert selector is not None
        try:
            if not wanted:
                selector.unregister(peer.sock)
            elif peer.sock.fileno() in selector.get_map():
                # The number of a socket that closed while watched, now reused: take it over.
                selector.modify(peer.sock, selectors.EVENT_WRITE, peer)
            else:
                selector.register(peer.sock, selectors.EVENT_WRITE, peer)
        except (KeyError, ValueError, OSError):
            pass  # a socket that closed meanwhile
        peer.waiting_writable = wanted

    def _release(self, peer: Peer) -> None:
        """Let go of the socket (``peer.lock`` held): its close is the browser thread's."""
        self._want_writable(peer, False)
        with self._lock:
            if self._peers.get(peer.source) is peer:
                del self._peers[peer.source]
        peer.released.set()
        peer.on_release()

    def _ping_idle_peers(self) -> None:
        due = time.monotonic() - self.ping_interval
        with self._lock:
            idle = [p for p in self._peers.values() if p.last_write <= due and not p.pending]
        for peer in idle:
            with peer.lock:
                if not peer.released.is_set():
                    peer.direct.append(PING_FRAME)
                    self._flush_locked(peer)

    @property
    def peers(self) -> int:
        """Browser sockets the writer serves now."""
        with self._lock:
            return len(self._peers)


def _send_dontwait(sock: socket.socket, data: memoryview) -> int:
    return sock.send(data, socket.MSG_DONTWAIT)


def _drain_wake_pipe(wake: socket.socket) -> None:
    try:
        while wake.recv(4096):
            pass
    except (BlockingIOError, OSError):
        pass
