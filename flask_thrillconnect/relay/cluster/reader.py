"""Each worker's reader of the event stream: new entries, in order, into callbacks.

One daemon thread per worker. It starts at the stream's newest entry (the worker's hub gets
what comes next), then loops: fetch the entries after its position with one script (which
checks the epoch and that nothing after the position was trimmed, atomically with the read);
when there are none, wait for the next one with ``XREAD BLOCK`` (at most ``block`` seconds,
so the thread can stop), then :data:`~.base.READ_GATHER` seconds more for the rest of its
burst. The blocking read uses its own client, whose socket timeout exceeds
the block time; every other call has the 0.5 s timeouts of
:func:`~flask_thrillconnect.redis_connection.connect`.

- **Epoch change** (Redis lost its data): ``on_epoch(new_epoch, 0)``, then the whole new
  stream is delivered from its start (everything in it was appended after the loss).
- **Gap** (the reader fell further behind than the stream keeps): ``on_gap(seq, trimmed)``,
  then it goes on with the oldest entry kept.
- **Redis failing**: ``on_status(False)`` once, retries with full-jitter back-off (at most
  :data:`BACKOFF_CAP` apart), ``on_status(True)`` when Redis answers again. Nothing blocks
  longer than a socket timeout; the position is kept, so no entry is lost or repeated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import redis

from ...redis_connection import COMMAND_TIMEOUT, CONNECT_TIMEOUT, RedisKeys, connect
from ..backoff import backoff_delay
from .base import READ_BATCH, READ_BLOCK, READ_GATHER, ClusterUnavailable, millis, redis_call
from .log import Entry, EventLog
from .seq import entry_id

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "EventReader"]

logger = logging.getLogger("flask_thrillconnect.relay.cluster")

#: The ceiling of the first retry delay after Redis failed, in seconds.
BACKOFF_BASE: Final = 0.1
#: The longest ceiling of a retry delay: Redis' return is noticed within about this long.
BACKOFF_CAP: Final = 2.0


class EventReader:
    """Reads one portal's event stream for one worker.

    :param url: the Redis URL (``THRILLCONNECT_REDIS_URL``).
    :param keys: the portal's key namespace.
    :param on_entry: called with ``(seq, envelope_text)`` for each entry, in stream order.
    :param on_epoch: called with ``(epoch, seq)`` when the reader starts on a stream, once at
        first and again whenever the epoch changed (Redis lost its data): entries that follow
        have larger ``seq`` values; browsers holding another epoch cannot resume.
    :param on_gap: called with ``(seq, trimmed)`` when the entries after ``seq`` up to
        ``trimmed`` were trimmed before this reader read them.
    :param on_status: called with ``False`` when Redis stops answering and ``True`` when it
        answers again.
    :param block: seconds one blocking read waits.
    :param batch: entries fetched at once.

    Callbacks run on the reader's thread, one at a time; an exception in one is logged and
    ignored.
    """

    def __init__(
        self,
        url: str,
        keys: RedisKeys,
        *,
        on_entry: Callable[[int, str], Any],
        on_epoch: Callable[[str, int], Any],
        on_gap: Callable[[int, int], Any] | None = None,
        on_status: Callable[[bool], Any] | None = None,
        block: float = READ_BLOCK,
        batch: int = READ_BATCH,
    ) -> None:
        if not block > 0 or batch < 1:
            raise ValueError("block must be > 0 and batch at least 1")
        self.client = connect(url)
        #: The event log over the reader's own (non-blocking) client, e.g. for replays.
        self.log = EventLog(self.client, keys)
        self._blocking = redis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=block + COMMAND_TIMEOUT,
            health_check_interval=30,
        )
        self.block = block
        self.batch = batch
        self._on_entry = on_entry
        self._on_epoch = on_epoch
        self._on_gap = on_gap
        self._on_status = on_status
        self._kick = threading.Event()
        self._stopping = False
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._epoch: str | None = None
        self._seq = 0
        #: Whether Redis answered the reader's last call.
        self.available = True

    @property
    def epoch(self) -> str | None:
        """The epoch of the stream being read (``None`` before the first answer)."""
        return self._epoch

    @property
    def seq(self) -> int:
        """The ``seq`` of the last entry delivered (or where reading started)."""
        return self._seq

    def start(self) -> None:
        """Start the thread (once; never after :meth:`stop`)."""
        with self._start_lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="thrillconnect-stream-reader", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread (within about ``block`` seconds) and close the connections."""
        # Under the start lock: a stop racing a start never joins a thread not yet started.
        with self._start_lock:
            self._stopping = True
            thread = self._thread
        self._kick.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.block + COMMAND_TIMEOUT + 1.0 if timeout is None else timeout)
        self._blocking.close()
        self.client.close()

    def replay(self, since: int, relay_id: str, *, limit: int) -> list[Entry] | None:
        """The entries after ``since`` up to the one this reader delivered last, for a browser
        resuming with ``since`` and ``relay_id`` (see :meth:`.EventLog.replay`): later
        entries reach it through ``on_entry``. ``None``: it cannot resume.

        :raises ClusterUnavailable: Redis did not answer.
        """
        if self._epoch is None or relay_id != self._epoch:
            return None
        return self.log.replay(since, relay_id, limit=limit, upto=self._seq)

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                self._step()
            except ClusterUnavailable as error:
                self._set_available(False, error)
                self._kick.wait(backoff_delay(failures, base=BACKOFF_BASE, cap=BACKOFF_CAP))
                failures += 1
            else:
                self._set_available(True)
                failures = 0

    def _step(self) -> None:
        if self._epoch is None:
            head = self.log.head()
            self._begin(head.epoch, head.seq)
            return
        fetched = self.log.fetch(self._seq, self._epoch, count=self.batch)
        if fetched.status == "ok" and fetched.entries:
            for entry in fetched.entries:
                self._seq = entry.seq
                self._call(self._on_entry, entry.seq, entry.text)
        elif fetched.status == "epoch":
            head = self.log.head()
            logger.warning("the event stream was lost (Redis lost its data): new epoch")
            self._begin(head.epoch, 0)
        elif fetched.status == "gap":
            logger.warning("the event stream was trimmed past this worker's position")
            if self._on_gap is not None:
                self._call(self._on_gap, self._seq, fetched.trimmed)
            self._seq = fetched.trimmed
        else:  # nothing new ("ok" without entries, or "ahead" of an emptied stream): wait
            self._wait()

    def _begin(self, epoch: str, seq: int) -> None:
        self._epoch, self._seq = epoch, seq
        self._call(self._on_epoch, epoch, seq)

    def _wait(self) -> None:
        with redis_call("read"):
            woke = self._blocking.xread(
                {self.log.keys.stream: entry_id(self._seq)}, count=1, block=millis(self.block)
            )
        if woke:
            time.sleep(READ_GATHER)  # the rest of the burst, fetched with it

    def _set_available(self, available: bool, error: Exception | None = None) -> None:
        if available == self.available:
            return
        self.available = available
        if available:
            logger.info("the event stream's Redis answers again")
        else:
            logger.warning("the event stream's Redis does not answer: %s", error)
        if self._on_status is not None:
            self._call(self._on_status, available)

    @staticmethod
    def _call(callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            logger.exception("event stream callback failed")
