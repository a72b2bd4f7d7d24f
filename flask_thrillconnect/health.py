"""The upstream REST status that ``/health`` reports, probed in the background, and the
owner check shared by ``flask thrillconnect check`` and ``THRILLCONNECT_CHECK_ON_START``.

A health check must answer within about a second, also (above all) while ThrillConnect hangs:
so ``/health`` never waits out the upstream read timeout. It reports the last probe's answer
and starts a new probe in a background thread when that answer is older than
:data:`PROBE_INTERVAL`; a probe still running after :data:`SLOW_AFTER` is itself the news.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigurationError,
    UpstreamError,
    UpstreamForbidden,
    UpstreamUnauthorized,
)

if TYPE_CHECKING:
    from .client import ThrillConnectClient

__all__ = [
    "FIRST_PROBE_WAIT",
    "NO_SERVICE_TOKEN",
    "PROBE_INTERVAL",
    "SLOW_AFTER",
    "RestProbe",
    "check_on_start",
    "count_sources",
]

logger = logging.getLogger("flask_thrillconnect")

#: What ``/health/detail`` and ``flask thrillconnect check`` say of the service stream when
#: ``THRILLCONNECT_SERVICE_TOKEN`` is not set.
NO_SERVICE_TOKEN = "disabled: no service token"

#: Seconds between probes, whatever the request rate.
PROBE_INTERVAL = 5.0
#: Seconds the very first ``/health`` waits for the first probe.
FIRST_PROBE_WAIT = 0.8
#: Seconds after which a probe without an answer means "not ok".
SLOW_AFTER = 2.0


class RestProbe:
    """Runs ``probe`` at most every :data:`PROBE_INTERVAL`, never in the asking thread.

    :param probe: asks upstream and returns ``{"ok": bool, …}``; it must not raise and must
        end within the client's own timeouts.
    :param clock: monotonic seconds.
    """

    def __init__(
        self, probe: Callable[[], dict[str, Any]], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._probe = probe
        self._clock = clock
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        # A probe thread of a parent process does not exist in a forked child.
        self._pid = os.getpid()
        self._result: dict[str, Any] | None = None
        self._result_at = 0.0
        self._running_since: float | None = None
        self._first_done = threading.Event()

    def status(self) -> dict[str, Any]:
        """The latest answer; waits only for the very first one, at most ``FIRST_PROBE_WAIT``."""
        now = self._clock()
        with self._lock:
            if self._pid != os.getpid():
                self._reset()
            expired = self._result is None or now - self._result_at >= PROBE_INTERVAL
            if expired and self._running_since is None:
                self._running_since = now
                threading.Thread(target=self._run, name="thrillconnect-health", daemon=True).start()
        self._first_done.wait(FIRST_PROBE_WAIT)
        with self._lock:
            result, running_since = self._result, self._running_since
        waited = 0.0 if running_since is None else self._clock() - running_since
        if result is None or waited > SLOW_AFTER:
            return {
                "ok": False,
                "error": "UpstreamTimeout",
                "message": f"ThrillConnect has not answered the health probe for {waited:.1f} s",
            }
        return result

    def _run(self) -> None:
        try:
            result = self._probe()
        except Exception as exc:  # a bug must not leave the probe "running" for ever
            result = {"ok": False, "error": type(exc).__name__, "message": "the probe failed"}
        with self._lock:
            self._result, self._result_at, self._running_since = result, self._clock(), None
        self._first_done.set()


def count_sources(client: ThrillConnectClient, owner_id: str) -> int:
    """How many sources ThrillConnect lists for the portal's operator and brand.

    ThrillConnect answers an empty list, not an error, for an operator or brand it does not
    know: none at all means the configuration is wrong.

    :raises ConfigurationError: no source, or the credentials were refused (401/403).
    :raises UpstreamError: ThrillConnect could not be asked.
    """
    try:
        count = len(client.sources())
    except (UpstreamUnauthorized, UpstreamForbidden) as exc:
        raise ConfigurationError(
            f"ThrillConnect refused the portal's credentials ({exc.status}): check "
            "THRILLCONNECT_SERVICE_TOKEN, THRILLCONNECT_OPERATOR_ID and THRILLCONNECT_BRAND_ID"
        ) from exc
    if count == 0:
        raise ConfigurationError(
            f"ThrillConnect lists no sources for {owner_id}: an unknown operator or brand? "
            "Check THRILLCONNECT_OPERATOR_ID and THRILLCONNECT_BRAND_ID"
        )
    return count


def check_on_start(client: ThrillConnectClient, owner_id: str) -> None:
    """``THRILLCONNECT_CHECK_ON_START``: refuse to start with an operator or brand that
    ThrillConnect does not know; start anyway (with a warning) when ThrillConnect cannot be
    reached, so that an upstream outage never keeps the portal down.

    :raises ConfigurationError: see :func:`count_sources`.
    """
    try:
        count_sources(client, owner_id)
    except ConfigurationError as exc:
        raise ConfigurationError(f"THRILLCONNECT_CHECK_ON_START: {exc}") from exc
    except UpstreamError as exc:
        logger.warning(
            "THRILLCONNECT_CHECK_ON_START: ThrillConnect could not be asked (%s); starting anyway",
            exc,
        )
