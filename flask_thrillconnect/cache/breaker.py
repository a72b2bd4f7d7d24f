"""When to use a shared backend (Redis) and when to do without it: a circuit breaker.

After a failure the backend is left alone for ``retry_after`` seconds (requests run per
process, at no cost of waiting), then one request probes it; a success closes the circuit
again. The change of mode is logged once each way, never per request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["CircuitBreaker"]

logger = logging.getLogger("flask_thrillconnect.cache")


class CircuitBreaker:
    """Closed (use the backend) or open (fall back) after a failure, for ``retry_after`` s.

    :param retry_after: seconds between a failure and the next attempt.
    :param clock: monotonic time source.
    """

    def __init__(
        self,
        retry_after: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retry_after <= 0:
            raise ValueError("retry_after must be positive")
        self.retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._open = False
        self._retry_at = 0.0
        self.failures = 0

    @property
    def is_open(self) -> bool:
        """Whether the backend is being done without (the fallback mode)."""
        return self._open

    def allows(self) -> bool:
        """Whether to use the backend now: always while closed; while open, once per
        ``retry_after`` (the probe; everyone else keeps falling back meanwhile)."""
        if not self._open:  # the hot path takes no lock
            return True
        with self._lock:
            if not self._open:
                return True
            now = self._clock()
            if now < self._retry_at:
                return False
            self._retry_at = now + self.retry_after
            return True

    def succeeded(self) -> None:
        """The backend answered: close the circuit (logged once)."""
        if not self._open:
            return
        with self._lock:
            if not self._open:
                return
            self._open = False
        logger.warning("Redis answers again: the cache is shared by the cluster again")

    def failed(self, exc: BaseException) -> None:
        """The backend failed: open the circuit for ``retry_after`` s (logged once)."""
        with self._lock:
            self.failures += 1
            was_open, self._open = self._open, True
            self._retry_at = self._clock() + self.retry_after
        if not was_open:
            # The type only: a message may name the server.
            logger.warning(
                "Redis failed (%s): the cache runs per process, trying Redis every %g s",
                type(exc).__name__,
                self.retry_after,
            )
