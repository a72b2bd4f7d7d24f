"""When the upstream stream tries again: full-jitter back-off, and recovery probes.

After an outage the back-off has grown (up to its cap), and events sent while the relay sleeps
it out are lost for every browser (the platform does not replay them). So while backing off
after a *connection-level* failure, the supervisor probes the stream's host and port with a
plain TCP connect every :data:`PROBE_INTERVAL` and reconnects at once when a platform seen not
accepting connections accepts them again. After an HTTP-level refusal (401, 403, 503 on the
upgrade) the platform did answer: the back-off holds, unprobed.
"""

from __future__ import annotations

import errno
import random
import socket
from urllib.parse import urlsplit

from ..errors import UpstreamError

__all__ = [
    "PROBE_INTERVAL",
    "PROBE_TIMEOUT",
    "accepts_connections",
    "answered",
    "backoff_delay",
    "host_port",
    "not_accepting",
]

#: Back-off exponents stop growing here (the cap is reached long before; avoids overflow).
_MAX_EXPONENT = 32
#: Seconds between recovery probes (TCP connects) while backing off after a connection-level
#: failure: a recovered platform is noticed within about this long.
PROBE_INTERVAL = 0.5
#: The longest a probe's TCP connect may take (also bounded by ``open_timeout``).
PROBE_TIMEOUT = 0.5
#: The port of a stream URL that names none.
_DEFAULT_PORTS = {"ws": 80, "wss": 443}
#: Socket errors that mean no listener took the connection: the platform is not accepting.
_NOT_ACCEPTING_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})


def backoff_delay(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 for the first retry).

    Exponential back-off with *full jitter*: uniform in ``[0, min(cap, base * 2**attempt)]``,
    so many portals losing the platform at once do not come back in lock-step.

    :param attempt: how many attempts in a row have failed before this one.
    :param base: the ceiling of the first delay.
    :param cap: the largest ceiling.
    :param rng: the random source (a seeded :class:`random.Random` in tests).
    """
    ceiling = min(cap, base * 2 ** min(max(attempt, 0), _MAX_EXPONENT))
    return (rng or random).uniform(0.0, ceiling)


def accepts_connections(target: tuple[str, int], *, timeout: float) -> bool:
    """Whether a TCP connection to ``target`` opens within ``timeout``; closed at once
    without sending anything."""
    try:
        with socket.create_connection(target, timeout=timeout):
            return True
    except (OSError, ValueError):  # refused, timed out, unreachable, name not resolved
        return False


def host_port(url: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``ws``/``wss`` URL, ``None`` when it has none."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port out of range or not a number
        return None
    if not parts.hostname or port is None:
        return None
    return parts.hostname, port


def answered(error: BaseException | None) -> bool:
    """Whether the platform answered the attempt at the HTTP level (e.g. 403 or 503 on the
    upgrade): then it was up, and the back-off must hold. ``None`` (stopping) counts too."""
    return error is None or (isinstance(error, UpstreamError) and error.status is not None)


def not_accepting(error: BaseException | None) -> bool:
    """Whether ``error`` shows that nothing took the connection: refused, unreachable, or the
    host name did not resolve. :func:`~flask_thrillconnect.upstream_ws.open_stream` raises its
    own error ``from None``; the socket error stays reachable as ``__context__``."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, socket.gaierror) or (
            isinstance(error, OSError) and error.errno in _NOT_ACCEPTING_ERRNOS
        ):
            return True
        error = error.__cause__ or error.__context__
    return False
