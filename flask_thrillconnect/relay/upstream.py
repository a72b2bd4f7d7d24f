"""The upstream stream supervisor: owns one WebSocket to ThrillConnect and keeps it alive.

One :class:`UpstreamSupervisor` runs one daemon thread that connects, subscribes, reads every
message into a callback and, whenever the connection fails or goes silent, reconnects with
exponential back-off and full jitter. The portal keeps one per process for the service stream,
or one per logged-in player (shared by that player's tabs) without a service token.

After a connection-level failure the back-off is cut short as soon as the platform accepts
connections again (see :mod:`~flask_thrillconnect.relay.backoff`).

Fork safety: a supervisor started before a fork (e.g. in a gunicorn master with
``preload_app``) is not used by the child. The child inherits the parent's socket but not its
thread; the first :meth:`UpstreamSupervisor.start` in the child forgets the parent's
connection without touching it (a close frame from the child would end the parent's stream)
and starts afresh with a new thread and a new connection.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from websockets.sync.client import ClientConnection

from ..errors import UpstreamUnauthorized
from ..log_events import log_event
from ..models import subscribe_request_json
from ..servers import yielder
from ..upstream_http import redact
from ..upstream_ws import open_stream
from .backoff import (
    PROBE_INTERVAL,
    PROBE_TIMEOUT,
    accepts_connections,
    answered,
    backoff_delay,
    host_port,
    not_accepting,
)
from .protocol import CLOSE_GOING_AWAY

__all__ = [
    "CONNECTED",
    "CONNECTING",
    "IDLE",
    "PROBE_INTERVAL",
    "PROBE_TIMEOUT",
    "RECONNECTING",
    "STOPPED",
    "UNAUTHORIZED",
    "UpstreamSupervisor",
    "WatchdogExpired",
    "backoff_delay",
]

logger = logging.getLogger("flask_thrillconnect.relay.upstream")

IDLE = "idle"
CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
UNAUTHORIZED = "unauthorized"
STOPPED = "stopped"

#: A connection that lived this long counts as healthy: the back-off starts over after it.
STABLE_AFTER = 10.0
_MAX_ERROR_TEXT = 200
# Guards the "was there a fork?" check of every supervisor; re-created in a forked child
# because a fork may happen while another thread holds it.
_fork_lock = threading.Lock()


def _new_fork_lock() -> None:
    global _fork_lock
    _fork_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_fork_lock)


class WatchdogExpired(Exception):
    """The connection sent no message and answered no ping within the watchdog period.

    Raised and handled inside the supervisor thread; it shows in ``stats()["last_error"]``.
    """


class UpstreamSupervisor:
    """Owns one upstream ThrillConnect WebSocket and keeps it alive.

    :param url: called before every connection attempt for the stream URL (so a refreshed
        token is picked up); the URL carries a token and is only ever logged redacted.
    :param subscriptions: the ``events`` of the ``SubscribeRequest`` sent after every
        (re)connection, e.g. ``[{"source": "thrillpots", "event_type": "*"}]``; empty sends none.
    :param on_message: called with every text message, from the supervisor thread; what it
        raises is logged and the loop goes on. It should be quick: it delays the next read.
    :param on_state: called as ``on_state(state, reconnected)`` on every state change, from the
        supervisor thread (``stopped`` may come from the thread calling :meth:`stop`); what it
        raises is logged. ``reconnected`` is ``True`` for ``connected`` unless this is the
        first attempt succeeding, so the caller knows to refresh what it may have missed.
    :param open_timeout: bound of the TCP, TLS and WebSocket handshakes.
    :param ping_interval: seconds between the websockets library's keep-alive pings.
    :param ping_timeout: seconds a keep-alive ping may wait for its pong.
    :param watchdog: a connection with no message and no pong for this long is dead; when
        silent for half of it, the supervisor sends its own ping.
    :param backoff_base: ceiling of the first reconnect delay (see :func:`backoff_delay`).
    :param backoff_cap: the largest reconnect delay.
    :param unauthorized_backoff: the wait after the upgrade is refused with 401; credentials
        rarely fix themselves, so retrying fast would only hammer the platform.
    :param probe_interval: seconds between recovery probes while backing off after a
        connection-level failure (a plain TCP connect to the stream's host and port; the wait
        ends as soon as a platform seen down accepts connections again); ``None`` turns
        probing off, so the back-off is always slept out.
    :param name: the thread's name.

    States (:attr:`state`): ``idle`` (not started), ``connecting`` (first attempt),
    ``connected``, ``reconnecting`` (lost or failed; backing off or retrying),
    ``unauthorized`` (401; retrying after ``unauthorized_backoff``), ``stopped``.
    """

    def __init__(
        self,
        url: Callable[[], str],
        *,
        subscriptions: Sequence[dict[str, Any]],
        on_message: Callable[[str], None],
        on_state: Callable[[str, bool], None] | None = None,
        open_timeout: float = 5.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 10.0,
        watchdog: float = 30.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        unauthorized_backoff: float = 60.0,
        probe_interval: float | None = PROBE_INTERVAL,
        name: str = "thrillconnect-upstream",
    ) -> None:
        for label, value in (
            ("open_timeout", open_timeout),
            ("ping_interval", ping_interval),
            ("ping_timeout", ping_timeout),
            ("watchdog", watchdog),
            ("backoff_base", backoff_base),
            ("backoff_cap", backoff_cap),
            ("unauthorized_backoff", unauthorized_backoff),
        ):
            if not value > 0:
                raise ValueError(f"{label} must be > 0")
        if probe_interval is not None and not probe_interval > 0:
            raise ValueError("probe_interval must be > 0 or None")
        self._url = url
        self._subscribe_text = subscribe_request_json(subscriptions) if subscriptions else None
        self._on_message = on_message
        self._on_state = on_state
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._watchdog = watchdog
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._unauthorized_backoff = unauthorized_backoff
        self._probe_interval = probe_interval
        self._name = name
        self._reset()

    def _reset(self) -> None:
        """Fresh run-time state: at construction, and in a forked child."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._state_changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: ClientConnection | None = None
        self._state = IDLE
        self._since = time.time()
        self._attempts = 0
        self._connects = 0
        self._reconnects = 0
        self._messages = 0
        self._probes = 0
        self._last_error: str | None = None
        self._last_message_at: float | None = None
        # (host, port) of the last connection attempt, for recovery probes; never the token.
        self._probe_target: tuple[str, int] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} {self._state}>"

    # -- public interface -------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``idle``, ``connecting``, ``connected``, ``reconnecting``, ``unauthorized`` or
        ``stopped``."""
        return self._state

    def start(self) -> None:
        """Start the supervisor thread if it is not running; idempotent, and a no-op once
        stopped (make a new supervisor instead). In a forked child it starts afresh."""
        self._forget_parent_after_fork()
        with self._lock:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection, end the thread and return within ``timeout`` seconds.

        Idempotent. A connection attempt in progress cannot be interrupted: the thread then
        ends by itself within ``open_timeout`` and closes what it opened (a recovery probe in
        progress, within :data:`PROBE_TIMEOUT`).
        """
        deadline = time.monotonic() + timeout
        self._forget_parent_after_fork()
        with self._lock:
            self._stopping.set()  # also ends a back-off wait at once
            thread, connection = self._thread, self._connection
        if connection is not None:
            _close(connection, budget=max(0.0, deadline - time.monotonic()))
        if thread is None:
            self._set_state(STOPPED)
            return
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("%s did not stop within %.1f s", self._name, timeout)

    def send(self, text: str) -> bool:
        """Send ``text`` on the live connection; thread-safe.

        :returns: ``True`` if it was handed to the connection, ``False`` when not connected
            (or the connection broke while sending).
        """
        if self._pid != os.getpid():
            return False  # the parent's socket: never write on it from a child
        with self._lock:
            connection = self._connection if self._state == CONNECTED else None
        if connection is None:
            return False
        try:
            connection.send(text)
        except Exception as exc:
            logger.debug("%s: send failed (%s)", self._name, _describe(exc))
            return False
        return True

    def wait_connected(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the ``connected`` state; answer whether it is
        (at once ``False`` once stopped)."""
        with self._state_changed:
            self._state_changed.wait_for(lambda: self._state in (CONNECTED, STOPPED), timeout)
            return self._state == CONNECTED

    def stats(self) -> dict[str, Any]:
        """Figures for health pages: ``state``, ``since`` (epoch seconds the state began),
        ``attempts`` (connection attempts), ``connects`` (connections opened), ``reconnects``
        (of those, the ones after a loss or failure), ``messages`` (received), ``probes``
        (recovery probes made while backing off), ``last_message_at`` (epoch seconds or
        ``None``) and ``last_error`` (``"Type: message"`` without any token, or ``None``)."""
        with self._lock:
            return {
                "state": self._state,
                "since": self._since,
                "attempts": self._attempts,
                "connects": self._connects,
                "reconnects": self._reconnects,
                "messages": self._messages,
                "probes": self._probes,
                "last_message_at": self._last_message_at,
                "last_error": self._last_error,
            }

    # -- the supervisor thread --------------------------------------------------------------
    def _run(self) -> None:
        # Failed or short-lived connections in a row: the back-off exponent.
        failures = 0
        try:
            while not self._stopping.is_set():
                error, healthy = self._serve_one_connection()
                if self._stopping.is_set():
                    break
                failures = 0 if healthy else failures + 1
                self._record_error(error)
                probe_target = None
                if isinstance(error, UpstreamUnauthorized):
                    self._set_state(UNAUTHORIZED)
                    delay = self._unauthorized_backoff
                else:
                    self._set_state(RECONNECTING)
                    delay = backoff_delay(failures, base=self._backoff_base, cap=self._backoff_cap)
                    if self._probe_interval is not None and not answered(error):
                        probe_target = self._probe_target
                log_event(
                    logger,
                    logging.INFO,
                    "stream_retry",
                    f"stream ended; next attempt in {delay:.2f} s"
                    + (" or once ThrillConnect accepts connections again" if probe_target else ""),
                    stream=self._name,
                    cause=_describe(error),
                    retry_in=delay,
                )
                self._wait_before_retry(delay, probe_target, down=not_accepting(error))
        except Exception:  # a bug here must not leave a silent dead thread
            logger.exception("%s: supervisor failed", self._name)
        finally:
            self._set_state(STOPPED)

    def _wait_before_retry(
        self, delay: float, probe_target: tuple[str, int] | None, *, down: bool
    ) -> None:
        """Wait ``delay`` seconds before the next attempt; :meth:`stop` ends the wait at once.

        With a ``probe_target`` (the last failure was connection-level, not an HTTP answer),
        a plain TCP connect to it every ``probe_interval`` (closed at once) ends the wait early
        when the platform accepts connections again after it was seen not accepting them
        (``down``: the failure was a refusal, or a probe failed). Sleeping out a back-off that
        grew during an outage would lose every event sent meanwhile. A platform that accepts
        TCP connections yet failed the stream (a proxy without backends, a stalled handshake)
        shows no such change: probing stops at its first accepted probe and the back-off holds.
        """
        deadline = time.monotonic() + delay
        if probe_target is None or self._probe_interval is None:
            self._stopping.wait(delay)
            return
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping.wait(min(self._probe_interval, remaining)):
                return
            if time.monotonic() >= deadline:
                return  # the back-off is over: the attempt itself is the test
            accepted = self._probe(probe_target)
            if self._stopping.is_set():
                return
            if not accepted:
                down = True
            elif down:
                logger.info(
                    "%s: %s:%d accepts connections again; reconnecting now",
                    self._name,
                    *probe_target,
                )
                return
            else:  # accepting all along: nothing a probe can notice, so sit the back-off out
                self._stopping.wait(max(0.0, deadline - time.monotonic()))
                return

    def _probe(self, target: tuple[str, int]) -> bool:
        with self._lock:
            self._probes += 1
        return accepts_connections(target, timeout=min(PROBE_TIMEOUT, self._open_timeout))

    def _serve_one_connection(self) -> tuple[BaseException | None, bool]:
        """Connect, subscribe and read until the connection ends.

        :returns: what ended it, and whether it was healthy (lived :data:`STABLE_AFTER` or
            delivered a message), which resets the back-off.
        """
        with self._lock:
            first_attempt = self._attempts == 0
            self._attempts += 1
        if first_attempt:
            self._set_state(CONNECTING)
        self._probe_target = None
        try:
            url = self._url()
            self._probe_target = host_port(url)
            logger.debug("%s: connecting to %s", self._name, redact(url))
            connection = open_stream(
                url,
                open_timeout=self._open_timeout,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
            )
        except Exception as exc:
            return exc, False
        # websockets (>= 17.1) expects a connection used directly to be entered as a context
        # manager; leaving it closes the connection (already closed by then: a no-op).
        with connection:
            return self._use(connection, first_attempt)

    def _use(
        self, connection: ClientConnection, first_attempt: bool
    ) -> tuple[BaseException | None, bool]:
        """Subscribe, then read until ``connection`` ends; close it. Answers as
        :meth:`_serve_one_connection`."""
        with self._lock:
            if self._stopping.is_set():  # stop() came during the handshake
                _close(connection, budget=None)
                return None, False
            self._connection = connection
            messages_before = self._messages
        opened_at = time.monotonic()
        error: BaseException | None = None
        try:
            if self._subscribe_text is not None:
                connection.send(self._subscribe_text)
            with self._lock:
                self._connects += 1
                if not first_attempt:
                    self._reconnects += 1
            self._set_state(CONNECTED, reconnected=not first_attempt)
            self._read(connection)
        except Exception as exc:
            error = exc
        finally:
            with self._lock:
                self._connection = None
                received = self._messages > messages_before
            _close(connection, budget=None)
        healthy = received or time.monotonic() - opened_at >= STABLE_AFTER
        return error, healthy

    def _read(self, connection: ClientConnection) -> None:
        """Hand every message to ``on_message`` until the connection fails or goes silent.

        Liveness is "a message or a pong within ``watchdog`` seconds": after half of it in
        silence one ping goes out (at most one is outstanding, so a peer that never answers
        cannot make pings pile up).
        """
        half = self._watchdog / 2
        last_alive = time.monotonic()
        pong = None
        let_others_run = yielder()
        while not self._stopping.is_set():
            now = time.monotonic()
            if pong is not None and pong.is_set():
                last_alive, pong = now, None
            silent = now - last_alive
            if silent >= self._watchdog:
                raise WatchdogExpired(f"no message or pong for {silent:.1f} s")
            if pong is None and silent >= half:
                pong = connection.ping()
            wake_at = self._watchdog if pong is not None else half
            try:
                message = connection.recv(timeout=max(0.0, wake_at - silent))
            except TimeoutError:
                continue
            last_alive = time.monotonic()
            self._deliver(message)
            # A tick's messages come at once and each fans out to every browser: let others
            # run between two (under gevent nothing else in the worker would meanwhile).
            let_others_run()

    def _deliver(self, message: str | bytes) -> None:
        with self._lock:
            self._messages += 1
            self._last_message_at = time.time()
        if not isinstance(message, str):
            logger.debug("%s: binary message of %d bytes ignored", self._name, len(message))
            return
        try:
            self._on_message(message)
        except Exception:
            logger.exception("%s: on_message failed", self._name)

    # -- state --------------------------------------------------------------------------------
    def _set_state(self, state: str, *, reconnected: bool = False) -> None:
        with self._lock:
            if state == self._state:
                return
            previous, since, now = self._state, self._since, time.time()
            self._state, self._since = state, now
            self._state_changed.notify_all()
        # Structured records (see log_events): stable event names, no token in any field.
        if state == UNAUTHORIZED:
            log_event(
                logger,
                logging.WARNING,
                "stream_unauthorized",
                "ThrillConnect refused the stream credentials (401); retrying every "
                f"{self._unauthorized_backoff:.0f} s",
                stream=self._name,
                retry_in=self._unauthorized_backoff,
            )
        elif state == RECONNECTING and previous == CONNECTED:
            log_event(
                logger,
                logging.WARNING,
                "stream_lost",
                "upstream stream lost",
                stream=self._name,
                cause=self._last_error,
            )
        elif state == CONNECTED and reconnected:
            log_event(
                logger,
                logging.INFO,
                "stream_reconnected",
                "upstream stream connected again",
                stream=self._name,
                down_seconds=now - since,
            )
        else:
            logger.info("%s: %s -> %s", self._name, previous, state)
        if self._on_state is None:
            return
        try:
            self._on_state(state, reconnected)
        except Exception:
            logger.exception("%s: on_state failed", self._name)

    def _record_error(self, error: BaseException | None) -> None:
        if error is not None:
            with self._lock:
                self._last_error = _describe(error)

    def _forget_parent_after_fork(self) -> None:
        """In a forked child, drop the parent's thread and connection (without closing the
        socket the parent still uses) and start from ``idle``."""
        with _fork_lock:
            if self._pid != os.getpid():
                logger.debug("%s: forked; starting afresh in process %d", self._name, os.getpid())
                self._reset()


def _close(connection: ClientConnection, budget: float | None) -> None:
    """Close ``connection``; with a ``budget``, the close handshake waits at most that long."""
    if budget is not None and (
        connection.close_timeout is None or connection.close_timeout > budget
    ):
        connection.close_timeout = budget
    try:
        connection.close(CLOSE_GOING_AWAY)
    except Exception as exc:  # closing is best effort; the socket is released either way
        logger.debug("closing the upstream stream failed (%s)", _describe(exc))


def _describe(error: BaseException | None) -> str:
    """``"Type: message"`` of an error, tokens redacted and bounded, for logs and stats."""
    if error is None:
        return "stopped"
    text = redact(str(error))[:_MAX_ERROR_TEXT]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
