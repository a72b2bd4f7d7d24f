"""One thread that writes every browser's frames, with sends that never block.

flask-sock gives each browser a thread of its own, and waking one of them per
delivered message costs far more than the message: thousands of threads take
turns at the GIL. So the relay writes from one thread instead. The hub tells it
which outboxes gained work; it sends their frames with ``MSG_DONTWAIT`` (the
socket stays blocking for simple-websocket's reader), keeps what a full socket
did not take, and waits for that socket to drain before sending more. A slow
browser only ever holds up its own bytes; its outbox conflates or overflows
(1013) in the hub meanwhile. The browser's own thread is left with what it is
good at: reading the browser's requests and closing the socket.
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
from collections.abc import Callable
from functools import lru_cache

from .outbox import Connection

logger = logging.getLogger("flask_thrillconnect.relay.writer")

#: Messages turned into frames per look at one outbox, so no browser monopolises the thread.
DRAIN_BATCH = 100
#: A ping frame (FIN + ping opcode, no payload): the browser answers with a pong.
PING_FRAME = b"\x89\x00"
#: How often idle connections are checked for a due ping.
_PING_SCAN_INTERVAL = 1.0


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
    """One browser socket as the writer sees it.

    Its :attr:`signal` is what the hub's connection sets when the outbox gains
    work (see :meth:`RelayHub.connect`'s ``wake_event``). When the hub asks for the
    connection to close, the writer finishes the frame in flight, stops touching
    the socket and calls ``on_release``: the browser's own thread then sends the
    close frame.
    """

    def __init__(self, writer: SocketWriter, sock: socket.socket, on_release: Callable[[], None]):
        self.writer = writer
        self.sock = sock
        self.on_release = on_release
        self.signal = _Signal(self)
        self.connection: Connection | None = None
        self.pending = memoryview(b"")
        self.direct: deque[bytes] = deque()
        self.last_write = time.monotonic()
        self.waiting_writable = False
        #: Held while frames are written, so a close frame never lands inside one.
        self.io_lock = threading.Lock()
        #: Set once the writer has let go of the socket (closing, failed or detached).
        self.released = threading.Event()

    def send_direct(self, text: str) -> None:
        """Queue an answer for this browser alone (an ``Error`` envelope, say)."""
        self.direct.append(text_frame(text))
        self.writer.ready(self)


class _Signal:
    """Event-like: ``set()`` queues the peer for the writer. The hub only ever sets it."""

    __slots__ = ("_peer",)

    def __init__(self, peer: Peer):
        self._peer = peer

    def set(self) -> None:
        self._peer.writer.ready(self._peer)

    def clear(self) -> None:
        pass

    def is_set(self) -> bool:
        return False

    def wait(self, timeout: float | None = None) -> bool:  # pragma: no cover - never waited on
        return False


class SocketWriter:
    """The writer thread of one relay; started on first use, and afresh after a fork."""

    def __init__(self, *, ping_interval: float = 25.0, name: str = "thrillconnect-writer"):
        self.ping_interval = ping_interval
        self.name = name
        self._lock = threading.Lock()
        self._ready: set[Peer] = set()
        self._peers: set[Peer] = set()
        self._signaled = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    # -- the browsers' side -------------------------------------------------------------------

    def attach(self, sock: socket.socket, on_release: Callable[[], None]) -> Peer:
        """A new browser socket; bind ``peer.connection`` before its first message."""
        peer = Peer(self, sock, on_release)
        with self._lock:
            self._ensure_started_locked()
            self._peers.add(peer)
        return peer

    def detach(self, peer: Peer) -> None:
        """Forget a browser (its thread is leaving); the writer stops touching its socket."""
        with self._lock:
            self._peers.discard(peer)
            self._ready.discard(peer)
        peer.released.set()
        self._wake()

    def ready(self, peer: Peer) -> None:
        """Queue ``peer`` for a flush; cheap, called by publishers under no lock of ours."""
        with self._lock:
            self._ready.add(peer)
            if self._signaled:
                return
            self._signaled = True
        self._wake()

    def close(self, timeout: float = 5.0) -> None:
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
                for key, _ in selector.select(timeout):
                    if key.data is None:
                        _drain_wake_pipe(wake_r)
                    else:
                        work.add(key.data)
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
        with peer.io_lock:
            if not peer.released.is_set():
                self._flush_locked(peer)

    def _flush_locked(self, peer: Peer) -> None:
        direct = peer.direct
        while True:
            if not peer.pending:
                # popleft, not a copy and clear: the browser's thread may append meanwhile.
                frames = [direct.popleft() for _ in range(len(direct))]
                connection = peer.connection
                if connection is not None:
                    frames.extend(map(text_frame, connection.drain(DRAIN_BATCH)))
                if not frames:
                    self._want_writable(peer, False)
                    if connection is not None and connection.close_code is not None:
                        self._release(peer)
                    return
                peer.pending = memoryview(b"".join(frames))
            try:
                sent = peer.sock.send(peer.pending, socket.MSG_DONTWAIT)
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

    def _want_writable(self, peer: Peer, wanted: bool) -> None:
        if peer.waiting_writable == wanted:
            return
        assert self._selector is not None
        try:
            if wanted:
                self._selector.register(peer.sock, selectors.EVENT_WRITE, peer)
            else:
                self._selector.unregister(peer.sock)
        except (KeyError, ValueError, OSError):
            pass  # a socket that closed meanwhile
        peer.waiting_writable = wanted

    def _release(self, peer: Peer) -> None:
        self._want_writable(peer, False)
        with self._lock:
            self._peers.discard(peer)
        peer.released.set()
        peer.on_release()

    def _ping_idle_peers(self) -> None:
        due = time.monotonic() - self.ping_interval
        with self._lock:
            idle = [peer for peer in self._peers if peer.last_write <= due and not peer.pending]
        for peer in idle:
            peer.direct.append(PING_FRAME)
            self._flush(peer)

    @property
    def peers(self) -> int:
        """Browser sockets the writer serves now."""
        with self._lock:
            return len(self._peers)


def _drain_wake_pipe(wake: socket.socket) -> None:
    try:
        while wake.recv(4096):
            pass
    except (BlockingIOError, OSError):
        pass

