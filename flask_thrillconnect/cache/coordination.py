"""What single-flight across processes needs from a storage they share.

A :class:`~flask_thrillconnect.cache.Storage` that implements :class:`ClusterStorage` lets
:class:`~flask_thrillconnect.cache.ResponseCache` coordinate with the other processes: one
*lead* per key for the whole cluster (a lock with an expiry and a fencing token), the others
*follow* (wait for the leader's entry), and an upstream failure starts a back-off every process
respects. Plain storages (one process) need none of it: the cache's in-process single-flight
is enough there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .storage import Entry, Storage

__all__ = ["BackingOff", "Busy", "Claim", "ClusterStorage", "Lead"]


@dataclass(frozen=True, slots=True)
class Lead:
    """The right to fetch ``key`` for everyone.

    :param token: fencing token (random, unique); a write with it is refused once anything
        newer was written (another lead after this one's lock expired, a ``set`` or a
        ``delete``).
    :param shared: issued by the shared store (``False``: by the per-process fallback).
    """

    key: str
    token: str
    shared: bool = True


@dataclass(frozen=True, slots=True)
class Busy:
    """Another process leads the fetch of the key now."""


@dataclass(frozen=True, slots=True)
class BackingOff:
    """Upstream failed for the key moments ago; nobody should ask again for ``seconds``."""

    seconds: float


Claim = Lead | Busy | BackingOff


@runtime_checkable
class ClusterStorage(Storage, Protocol):
    """A :class:`Storage` shared by processes, which also coordinates their fetches.

    ``set`` and ``delete`` supersede every lead issued before them (their fencing tokens stop
    being accepted). None of these methods may raise for the store's own failures: a store
    that cannot reach its backend answers for this process alone (``claim`` always leads).
    """

    def claim(self, key: str, hold: float, *, respect_backoff: bool) -> Claim:
        """Take the lead of ``key`` for ``hold`` seconds at most (the lock expires then).

        :param respect_backoff: answer :class:`BackingOff` rather than lead while a failure's
            back-off runs (when a stale copy can stand in).
        """
        ...

    def commit(self, lead: Lead, entry: Entry | None) -> bool:
        """Store ``entry`` (``None``: delete the key) if ``lead`` is still the newest writer,
        end the back-off and give up the lead. Answers whether it was written."""
        ...

    def release(self, lead: Lead, backoff: float = 0.0) -> None:
        """Give up ``lead`` without writing; ``backoff`` > 0 starts a back-off of that many
        seconds for every process."""
        ...

    def follow(self, key: str, timeout: float) -> Entry | BackingOff | None:
        """Wait at most ``timeout`` seconds for the leader of ``key``: its usable entry,
        :class:`BackingOff` when it failed, ``None`` when nobody leads (any more) or time is
        up."""
        ...

    def stats(self) -> dict[str, int | str]:
        """Figures for ``/health``, among them ``mode``."""
        ...
