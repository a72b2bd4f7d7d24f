"""Small pieces of :class:`~flask_thrillconnect.cache.ResponseCache`'s bookkeeping."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from .results import CacheResult

__all__ = ["Backoffs", "Counters", "Flight"]


class Flight:
    """One fetch in progress for one key; the process's other callers of that key wait on it."""

    __slots__ = ("done", "error", "result", "superseded")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: CacheResult | None = None
        self.error: BaseException | None = None
        # Set when put()/invalidate() run during the fetch: its older value must not be stored.
        self.superseded = False


class Counters:
    """Thread-safe event counters."""

    def __init__(self, *names: str) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(names, 0)

    def incr(self, name: str) -> None:
        with self._lock:
            self._values[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class Backoffs:
    """Keys whose upstream failed recently, each until its back-off ends; the oldest are
    forgotten beyond ``max_keys``. Not locked: its owner calls it under its own lock."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self._max_keys = max_keys
        self._until: OrderedDict[str, float] = OrderedDict()

    def active(self, key: str, now: float) -> bool:
        """Whether ``key`` is backing off at ``now``."""
        until = self._until.get(key)
        if until is None:
            return False
        if now < until:
            return True
        del self._until[key]
        return False

    def start(self, key: str, until: float) -> None:
        self._until[key] = until
        self._until.move_to_end(key)
        while len(self._until) > self._max_keys:
            self._until.popitem(last=False)

    def end(self, matches: Callable[[str], bool]) -> None:
        """End the back-off of every key that ``matches``."""
        for key in [key for key in self._until if matches(key)]:
            del self._until[key]
