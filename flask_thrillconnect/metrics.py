"""Prometheus metrics, when ``prometheus_client`` is installed (the ``[metrics]`` extra).

Every metric of the package is defined here, once per process, at import, in
``prometheus_client``'s default registry: the portal's own ``/metrics`` shows them. The rest
of the package calls the small functions below where things happen; without
``prometheus_client`` they return at once (and :func:`upstream_request` is a shared null
context), so nothing is imported, registered or counted.

No label names an app, a player, an instance or anything else a visitor controls: the values
come from fixed sets (cache kinds, error reasons, stream states, event names). Several apps
in one process add up in the same series. Under gunicorn, set ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's multiprocess mode): the gauges sum over live processes (``livesum``).
The list, with what each metric means, is in ``docs/operations.rst``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import requests
import urllib3.exceptions

from .errors import UpstreamError, UpstreamTimeout

try:
    from prometheus_client import Counter, Gauge, Histogram
except ImportError:  # the [metrics] extra is not installed: every function is a no-op
    _AVAILABLE = False
else:
    _AVAILABLE = True

__all__ = [
    "ENABLED",
    "RELAYED_EVENTS",
    "StreamState",
    "browser_connected",
    "browser_disconnected",
    "cache_answer",
    "relay_drained",
    "relay_overflowed",
    "relay_published",
    "upstream_request",
]

#: The ``msg_name`` values ``thrillconnect_relay_events_total`` counts by name; every
#: other event counts as ``other``.
RELAYED_EVENTS = frozenset({"JackpotUpdate", "WinEvent", "RaffleWinEvent", "OptInEvent"})
#: Upstream stream states counted by ``thrillconnect_upstream_streams`` (``idle`` and
#: ``stopped`` streams are not counted).
STREAM_STATES = ("connecting", "connected", "reconnecting", "unauthorized")
#: One outbox batch in this many gives a fan-out delay sample (see :func:`relay_drained`).
FANOUT_SAMPLE_EVERY = 8
#: Published texts whose publish time is remembered for the fan-out delay.
_PUBLISHED_REMEMBERED = 1024
_FANOUT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Metrics:
    """The metric objects; made once, at import, when prometheus_client is installed."""

    def __init__(self) -> None:
        self.cache = Counter(
            "thrillconnect_cache_requests",
            "Cached reads answered, by kind of data and result (the X-Cache value).",
            ["kind", "result"],
        )
        self.upstream_duration = Histogram(
            "thrillconnect_upstream_request_duration_seconds",
            "Upstream REST calls: seconds until the outcome (retries included), by kind.",
            ["kind"],
        )
        self.upstream_errors = Counter(
            "thrillconnect_upstream_errors",
            "Upstream REST calls that failed, by kind and reason.",
            ["kind", "reason"],
        )
        self.streams = Gauge(
            "thrillconnect_upstream_streams",
            "Upstream event streams by mode (service or player) and state.",
            ["mode", "state"],
            multiprocess_mode="livesum",
        )
        self.reconnects = Counter(
            "thrillconnect_upstream_stream_reconnects",
            "Upstream event streams connected again after a loss or failure.",
            ["mode"],
        )
        self.connections = Gauge(
            "thrillconnect_relay_connections",
            "Browsers connected to the relay WebSocket.",
            multiprocess_mode="livesum",
        )
        self.events = Counter(
            "thrillconnect_relay_events",
            "Events published to the relay's browsers, by msg_name (a fixed set, else other).",
            ["msg_name"],
        )
        self.overflows = Counter(
            "thrillconnect_relay_overflows",
            "Browser connections closed with 1013 because their outbox overflowed.",
        )
        self.fanout_delay = Histogram(
            "thrillconnect_relay_fanout_delay_seconds",
            "Seconds from an event's publication in the relay to its dispatch to a browser "
            f"socket (one outbox batch in {FANOUT_SAMPLE_EVERY} is sampled).",
            buckets=_FANOUT_BUCKETS,
        )
        # Children bound once: the hot paths pay a dict lookup and an increment.
        self.cache_children: dict[tuple[str, str], Any] = {}
        self.event_children = {
            name: self.events.labels(name) for name in (*sorted(RELAYED_EVENTS), "other")
        }
        # text -> monotonic time it was published (the newest _PUBLISHED_REMEMBERED).
        self.published: OrderedDict[str, float] = OrderedDict()
        self.published_lock = threading.Lock()
        self.drains = 0


_METRICS: _Metrics | None = _Metrics() if _AVAILABLE else None
#: Whether the metrics are collected (prometheus_client is installed).
ENABLED = _METRICS is not None


# -- cache ----------------------------------------------------------------------------------


def cache_answer(kind: str, status: str) -> None:
    """A cached read of ``kind`` answered with ``status`` (``HIT``, ``MISS``, ``STALE``,
    ``UPDATING``)."""
    m = _METRICS
    if m is None:
        return
    child = m.cache_children.get((kind, status))
    if child is None:
        child = m.cache_children[kind, status] = m.cache.labels(kind, status.lower())
    child.inc()


# -- upstream REST ---------------------------------------------------------------------------


class _UpstreamTimer:
    """Times one upstream call; on an :class:`UpstreamError`, counts it by reason."""

    __slots__ = ("kind", "metrics", "started")

    def __init__(self, metrics: _Metrics, kind: str) -> None:
        self.metrics = metrics
        self.kind = kind
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, UpstreamError):
            return  # no exchange took place (a configuration error, an interrupt)
        elapsed = time.monotonic() - self.started
        self.metrics.upstream_duration.labels(self.kind).observe(elapsed)
        if exc is not None:
            self.metrics.upstream_errors.labels(self.kind, failure_reason(exc)).inc()


_NO_TIMER = contextlib.nullcontext()


def upstream_request(kind: str) -> contextlib.AbstractContextManager[None]:
    """A context around one upstream REST call of ``kind`` (``currencies``, ``sources``,
    ``jackpot``, ``ticker``, ``health``, ``cors``): its duration, and its failure if an
    :class:`~flask_thrillconnect.errors.UpstreamError` leaves it."""
    m = _METRICS
    return _NO_TIMER if m is None else _UpstreamTimer(m, kind)


def failure_reason(exc: UpstreamError) -> str:
    """``timeout``, ``connection`` (no answer), ``4xx``/``5xx`` (an error answer) or
    ``invalid_response`` (an answer that could not be used: not JSON, not the expected
    shape, too large, a redirect refused)."""
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    status = exc.status
    if status is None:
        cause = exc.__cause__
        transport = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)
        return "connection" if isinstance(cause, transport) else "invalid_response"
    if 400 <= status < 600:
        return f"{status // 100}xx"
    return "invalid_response"


# -- upstream streams ------------------------------------------------------------------------


class StreamState:
    """Keeps one upstream stream's place in ``thrillconnect_upstream_streams``.

    :param mode: ``service`` or ``player`` (never the player's id).
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._lock = threading.Lock()
        self._state: str | None = None
        self._pid = os.getpid()
        self._stopped = False

    def changed(self, state: str, reconnected: bool) -> None:
        """The stream went to ``state`` (an :class:`~.relay.upstream.UpstreamSupervisor`
        state); ``reconnected``: connected again after a loss."""
        m = _METRICS
        if m is None:
            return
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's stream is not ours
                self._pid, self._state, self._stopped = os.getpid(), None, False
            if self._stopped:
                return  # a late report from the stream's thread after stop()
            previous = self._state
            self._state = state if state in STREAM_STATES else None
            self._stopped = state == "stopped"
            if previous == self._state:
                return
            if previous is not None:
                m.streams.labels(self.mode, previous).dec()
            if self._state is not None:
                m.streams.labels(self.mode, self._state).inc()
        if state == "connected" and reconnected:
            m.reconnects.labels(self.mode).inc()


# -- relay -----------------------------------------------------------------------------------


def browser_connected() -> None:
    """A browser joined the relay (one call per :meth:`~.relay.relay.Relay.connect`)."""
    m = _METRICS
    if m is not None:
        m.connections.inc()


def browser_disconnected() -> None:
    """A browser left the relay (one call per :meth:`~.relay.relay.Relay.disconnect`)."""
    m = _METRICS
    if m is not None:
        m.connections.dec()


def relay_published(envelope: Mapping[str, Any], text: str) -> None:
    """An event was published to the relay's browsers as ``text`` (once, however many
    browsers receive it). Called before its fan-out."""
    m = _METRICS
    if m is None:
        return
    name = envelope.get("msg_name")
    m.event_children[name if name in RELAYED_EVENTS else "other"].inc()
    with m.published_lock:
        published = m.published
        published[text] = time.monotonic()
        if len(published) > _PUBLISHED_REMEMBERED:
            published.popitem(last=False)


def relay_drained(texts: Sequence[str]) -> None:
    """A consumer took ``texts`` from a browser's outbox to write them to its socket.

    One non-empty batch in :data:`FANOUT_SAMPLE_EVERY` gives a fan-out delay sample: that of
    its oldest message, if it was published recently (not a relay status, nor a replay of an
    event the publish times no longer hold).
    """
    m = _METRICS
    if m is None or not texts:
        return
    m.drains += 1  # a racy count is fine: it only spreads the samples
    if m.drains % FANOUT_SAMPLE_EVERY:
        return
    published_at = m.published.get(texts[0])
    if published_at is not None:
        m.fanout_delay.observe(time.monotonic() - published_at)


def relay_overflowed() -> None:
    """A browser's outbox overflowed: it is to be closed with 1013."""
    m = _METRICS
    if m is not None:
        m.overflows.inc()
