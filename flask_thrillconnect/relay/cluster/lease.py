"""Who holds the upstream service stream: N slots of an expiring, fenced lease in Redis.

``THRILLCONNECT_STREAM_HOLDERS`` slots (1, or 2 for a hot standby) each hold at most one
process. A slot's key holds ``<fence>:<token>`` with a time to live of :data:`~.base.LEASE_TTL`:

- **acquire** takes the first free slot (``EXISTS`` + ``SET PX`` in one script) with a new
  *fencing token*: a number from ``INCR`` on a counter shared by the slots, seeded with the
  Redis clock so that it keeps increasing even after Redis lost its data, and the process's
  random token (a slot it took in an attempt whose answer timed out is recognised by it);
- **renew** extends the ttl only while the slot still holds exactly that value, every
  :data:`~.base.RENEW_INTERVAL` (a third of the ttl); **release** deletes it the same way;
- the event log's append script refuses a write whose fence is not the slot's current value,
  so a holder that was paused (a GC pause, a stopped VM) and lost its slot meanwhile cannot
  write after the slot expired or was taken, whatever it believes.

A holder also knows on its own when it lost the lease: it counts the ttl from the start of
its last successful renewal (Redis counts it from later), so when renewals fail (Redis down,
too slow) :attr:`HolderLease.held` turns false no later than Redis lets the slot go.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...redis_connection import RedisKeys
from . import scripts
from .base import LEASE_TTL, ClusterUnavailable, StreamKeys, millis, redis_call, text

if TYPE_CHECKING:
    import redis

__all__ = ["Fence", "HolderLease", "LeaseKeeper"]

logger = logging.getLogger("flask_thrillconnect.relay.cluster")


@dataclass(frozen=True, slots=True)
class Fence:
    """One acquisition of a holder slot: what a holder passes to every append."""

    #: The slot (0-based).
    slot: int
    #: The fencing token: larger for every acquisition of any slot.
    number: int
    #: The random token of the process's lease.
    token: str

    @property
    def value(self) -> str:
        """The slot key's value while this acquisition holds it."""
        return f"{self.number}:{self.token}"


class HolderLease:
    """One process's claim on a holder slot. Thread-safe.

    :param client: from :func:`flask_thrillconnect.redis_connection.connect`.
    :param keys: the portal's key namespace.
    :param slots: how many processes may hold the stream (``THRILLCONNECT_STREAM_HOLDERS``).
    :param ttl: seconds a slot stays held without a renewal.
    :param clock: monotonic seconds (a fake clock in tests).

    :meth:`acquire`, :meth:`renew` and :meth:`release` raise
    :class:`~.base.ClusterUnavailable` when Redis fails or does not answer in time.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        slots: int,
        ttl: float = LEASE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        if not ttl > 0:
            raise ValueError("ttl must be > 0")
        self.keys = StreamKeys(keys)
        self.slots = slots
        self.ttl = ttl
        self._clock = clock
        self._acquire = client.register_script(scripts.ACQUIRE)
        self._renew = client.register_script(scripts.RENEW)
        self._release = client.register_script(scripts.RELEASE)
        # One random token per process's lease; each acquisition adds a new fence number.
        self._token = secrets.token_urlsafe(12)
        self._lock = threading.Lock()
        self._fence: Fence | None = None
        self._valid_until = 0.0

    @property
    def fence(self) -> Fence | None:
        """The lease while :attr:`held`, else ``None``."""
        with self._lock:
            return self._fence if self._clock() < self._valid_until else None

    @property
    def held(self) -> bool:
        """Whether this process holds a slot: it acquired or renewed it less than ``ttl`` ago
        and Redis did not say otherwise since."""
        return self.fence is not None

    def expires_in(self) -> float:
        """Seconds until the lease ends unless renewed (0 when not held)."""
        with self._lock:
            if self._fence is None:
                return 0.0
            return max(0.0, self._valid_until - self._clock())

    def acquire(self) -> Fence | None:
        """Hold a slot: renew ours, or take the first free one.

        :returns: the lease, or ``None`` when every slot is held by other processes.
        """
        if self._fence is not None and self.renew():
            return self.fence
        started = self._clock()
        keys = [self.keys.fence, *(self.keys.holder(slot) for slot in range(self.slots))]
        with redis_call("acquire"):
            reply = self._acquire(keys, [self._token, millis(self.ttl)])
        if not reply:
            return None
        number, _, _ = text(reply[1]).partition(":")
        fence = Fence(slot=int(reply[0]), number=int(number), token=self._token)
        with self._lock:
            self._fence, self._valid_until = fence, started + self.ttl
        return fence

    def renew(self) -> bool:
        """Extend the lease.

        :returns: whether this process still holds its slot (``False`` when it held none,
            or when the slot expired or was taken: it must stop writing).
        :raises ClusterUnavailable: Redis did not answer; :attr:`held` says whether the lease
            may still be ours (it turns false when the ttl has run out).
        """
        with self._lock:
            fence = self._fence
        if fence is None:
            return False
        started = self._clock()
        try:
            with redis_call("renew"):
                status = text(
                    self._renew([self.keys.holder(fence.slot)], [fence.value, millis(self.ttl)])
                )
        except ClusterUnavailable:
            with self._lock:
                if self._fence == fence and self._clock() >= self._valid_until:
                    self._fence = None
            raise
        with self._lock:
            if self._fence != fence:
                return False
            if status == "held":
                self._valid_until = started + self.ttl
                return True
            self._fence = None
            return False

    def release(self) -> None:
        """Give the slot up at once, so that another process takes it without waiting for the
        ttl (on shutdown). Forgets the lease even when Redis does not answer."""
        with self._lock:
            fence, self._fence = self._fence, None
        if fence is not None:
            with redis_call("release"):
                self._release([self.keys.holder(fence.slot)], [fence.value])


class LeaseKeeper:
    """A daemon thread that keeps a :class:`HolderLease`: it tries to take a free slot, renews
    the one it holds every ``interval``, and reports each change.

    :param lease: the lease to keep.
    :param on_acquired: called with the :class:`Fence` when a slot was taken (start the
        upstream stream).
    :param on_lost: called when the slot is lost: Redis refused a renewal, or renewals failed
        until the ttl ran out (stop the upstream stream; its appends are refused anyway).
    :param interval: seconds between attempts (default: a third of the ttl).

    Callbacks run on the keeper's thread and should return quickly; an exception in one is
    logged and ignored.
    """

    def __init__(
        self,
        lease: HolderLease,
        *,
        on_acquired: Callable[[Fence], Any],
        on_lost: Callable[[], Any],
        interval: float | None = None,
    ) -> None:
        self.lease = lease
        self.interval = lease.ttl / 3 if interval is None else interval
        if not 0 < self.interval < lease.ttl:
            raise ValueError("interval must be > 0 and shorter than the lease's ttl")
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._kick = threading.Event()
        self._stopping = False
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: Whether Redis answered the last attempt (for health figures).
        self.redis_ok = True

    def start(self) -> None:
        """Start the thread (once; never after :meth:`stop`)."""
        with self._start_lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="thrillconnect-lease", daemon=True
                )
                self._thread.start()

    def wake(self) -> None:
        """Try now rather than at the next interval (e.g. after an append was refused)."""
        self._kick.set()

    def stop(self, *, release: bool = True, timeout: float = 2.0) -> None:
        """Stop the thread; ``release`` gives the slot up at once (else it expires)."""
        # Under the start lock: a stop racing a start (a fallback while the node starts)
        # either prevents the thread or sees it started, never half way.
        with self._start_lock:
            self._stopping = True
            thread = self._thread
        self._kick.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if release:
            try:
                self.lease.release()
            except ClusterUnavailable:
                logger.info("could not release the holder slot: it expires on its own")

    def _run(self) -> None:
        holding = False
        while not self._stopping:
            try:
                if holding:
                    self.lease.renew()
                else:
                    self.lease.acquire()
                self._redis_answered(True)
            except ClusterUnavailable as error:
                self._redis_answered(False, error)
            fence = self.lease.fence
            if fence is not None and not holding:
                logger.info("holding the upstream stream (slot %d)", fence.slot)
                self._call(self._on_acquired, fence)
            elif fence is None and holding:
                logger.warning("lost the upstream stream's holder slot")
                self._call(self._on_lost)
            holding = fence is not None
            wait = self.interval
            if holding:  # while Redis fails, notice the end of the lease when it comes
                wait = min(wait, max(0.01, self.lease.expires_in()))
            self._kick.wait(wait)
            self._kick.clear()
        if holding:
            self._call(self._on_lost)

    def _redis_answered(self, ok: bool, error: Exception | None = None) -> None:
        if ok != self.redis_ok:
            if ok:
                logger.info("Redis answers the holder lease again")
            else:
                logger.warning("holder lease: %s", error)
        self.redis_ok = ok

    @staticmethod
    def _call(callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            logger.exception("holder lease callback failed")
