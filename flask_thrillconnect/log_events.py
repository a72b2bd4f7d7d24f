"""Structured, one-line log records with stable event names.

Operations care about a few events: an upstream REST call failed (``upstream_failure``), the
upstream stream was lost, is retried, was refused or came back (``stream_lost``,
``stream_retry``, ``stream_unauthorized``, ``stream_reconnected``), a browser fell too far
behind and was closed (``relay_overflow``). Each is logged as one line that starts with its
name and fields, so a plain log format shows them::

    event=upstream_failure kind=ticker error=UpstreamUnavailable status=503 suppressed=0: …

and the same fields are attributes of the record (``extra``: ``record.event``,
``record.kind``…), so a JSON formatter picks them up. Values are ids of the package's own
vocabulary, numbers and texts already redacted: never a token, a password or a URL's query.
The list of events and fields is in ``docs/operations.rst``.

:class:`RateLimit` keeps a storm of the same event to one line per interval.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimit", "log_event"]

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/")


def _value(value: object) -> str:
    """A field's value in the line: bare when it is a plain token, JSON-quoted otherwise."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return text if text and _PLAIN.issuperset(text) else json.dumps(text, ensure_ascii=False)


def log_event(logger: logging.Logger, level: int, event: str, text: str, **fields: object) -> None:
    """Log ``event=<event> key=value …: text`` at ``level``, with ``event`` and ``fields`` as
    attributes of the record.

    :param text: a human sentence, already free of secrets (run it through
        :func:`~flask_thrillconnect.upstream_http.redact` when it may carry a URL).
    :param fields: short values of a fixed vocabulary; ``None`` shows as ``-``. Their names
        must not be those of :class:`logging.LogRecord` attributes (``name``, ``message``…).
    """
    if not logger.isEnabledFor(level):
        return
    head = " ".join([f"event={event}", *(f"{key}={_value(v)}" for key, v in fields.items())])
    logger.log(level, "%s: %s", head, text, extra={"event": event, **fields})


class RateLimit:
    """Lets one event of each key through every ``interval`` seconds and counts the others.

    :param clock: monotonic seconds.
    """

    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (when last let through, events held back since)
        self._keys: dict[str, tuple[float, int]] = {}

    def admit(self, key: str) -> int | None:
        """``None`` when an event of ``key`` went through less than ``interval`` ago (this one
        is counted); else how many were held back since the last one that went through."""
        now = self._clock()
        with self._lock:
            last, held = self._keys.get(key, (-self.interval, 0))
            if now - last < self.interval:
                self._keys[key] = (last, held + 1)
                return None
            self._keys[key] = (now, 0)
        return held
