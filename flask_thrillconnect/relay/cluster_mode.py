"""The relay's cluster mode: :class:`ClusterFeed`, this process's part of the cluster.

The :class:`~.relay.Relay` owns one and calls it through :meth:`~ClusterFeed.start`,
:meth:`~ClusterFeed.append`, :meth:`~ClusterFeed.append_status`,
:meth:`~ClusterFeed.backfill`, :meth:`~ClusterFeed.stats` and :meth:`~ClusterFeed.stop`;
the feed calls back into the relay through the callables it was given (routing an entry,
starting, reading and taking the service stream). What cluster mode does is described in
:mod:`.relay`'s docstring.

The feed shares the relay's lock: it guards the mode and the node *together with* the
relay's service stream (a holder that loses its slot takes the stream only while still in
Redis mode; a fallback reads it in the same step that leaves Redis mode). The callables
``service_stream`` and ``take_service_stream`` are called with that lock held; every other
callable with no lock held.

:mod:`.cluster` imports redis-py: it is imported here only when a node is made.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal

from ..config import Settings
from ..limits import MAX_UPSTREAM_MESSAGE_BYTES
from ..models import parse_json, to_json
from .hub import Backfill, RelayHub, UpstreamStatus
from .protocol import relay_status
from .upstream import CONNECTED, UpstreamSupervisor

if TYPE_CHECKING:
    from .cluster import EventLog, EventReader, LeaseKeeper

__all__ = [
    "BACKFILL_LIMIT",
    "CLUSTER_START_WAIT",
    "FALLBACK_GRACE",
    "REJOIN_AFTER",
    "STATUS_HEARTBEAT",
    "STATUS_TTL",
    "ClusterFeed",
    "ClusterMode",
]

logger = logging.getLogger("flask_thrillconnect.relay")

#: Cluster mode: seconds the first browser waits for the event stream before the process
#: falls back to per-process mode (generous: a busy machine may take a few seconds to start
#: the reader, and every browser of the process reconnects twice if it falls back).
CLUSTER_START_WAIT: Final = 5.0
#: Cluster mode: seconds the event stream's Redis may fail to answer before the process falls
#: back (a single slow call, e.g. during a fork for a snapshot, is not an outage).
FALLBACK_GRACE: Final = 1.0
#: Cluster mode: seconds Redis must answer again, without a failure, before a process that
#: fell back returns to cluster mode (so a flapping Redis does not bounce every browser).
REJOIN_AFTER: Final = 3.0
#: Cluster mode: seconds between a holder's status entries.
STATUS_HEARTBEAT: Final = 1.5
#: Cluster mode: seconds a holder's status entry stands for it.
STATUS_TTL: Final = 5.0
#: Cluster mode: the most stream entries read back for one resuming browser.
BACKFILL_LIMIT: Final = 2000

#: The relay's cluster mode: ``off`` (no Redis configured), ``starting``, ``redis``,
#: ``fallback`` (Redis failed: per-process mode), or ``rejoining`` (Redis answers again: a new
#: node is starting while the process still serves its browsers in per-process mode).
ClusterMode = Literal["off", "starting", "redis", "fallback", "rejoining"]


class _ClusterNode:
    """This process's part of the cluster: its reader, its lease keeper, the event log and
    the status thread. Made lazily, in the process that uses it (never before a fork), and
    made anew when the process rejoins the cluster after a fallback.

    Every callback is given the node first, so that a replaced node's late calls are told
    apart from the current node's.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        on_entry: Callable[[_ClusterNode, int, str], Any],
        on_epoch: Callable[[_ClusterNode, str, int], Any],
        on_gap: Callable[[_ClusterNode, int, int], Any],
        on_status: Callable[[_ClusterNode, bool], Any],
        on_acquired: Callable[[_ClusterNode, Any], Any],
        on_lost: Callable[[_ClusterNode], Any],
        watch: Callable[[_ClusterNode], Any],
    ) -> None:
        from ..redis_connection import RedisKeys, connect
        from .cluster import EventLog, EventReader, HolderLease, LeaseKeeper

        assert settings.redis_url is not None
        keys = RedisKeys(settings.redis_prefix)
        self.pid = os.getpid()
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.reader: EventReader = EventReader(
            settings.redis_url,
            keys,
            on_entry=partial(on_entry, self),
            on_epoch=partial(on_epoch, self),
            on_gap=partial(on_gap, self),
            on_status=partial(on_status, self),
        )
        client = connect(settings.redis_url)
        self.log: EventLog = EventLog(client, keys)
        self.keeper: LeaseKeeper = LeaseKeeper(
            HolderLease(client, keys, slots=settings.stream_holders),
            on_acquired=partial(on_acquired, self),
            on_lost=partial(on_lost, self),
        )
        self.watch = threading.Thread(
            target=watch, args=(self,), name="thrillconnect-cluster", daemon=True
        )
        # slot -> (its holder's last upstream status, when it arrived)
        self.holder_status: dict[int, tuple[str, float]] = {}
        #: When the reader found Redis not answering (``None`` while it answers).
        self.failing_since: float | None = None

    def start(self) -> None:
        self.reader.start()
        self.keeper.start()
        self.watch.start()

    def stop(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.stopping.set()
        self.keeper.stop(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
        self.reader.stop(timeout=max(0.1, deadline - time.monotonic()))


class ClusterFeed:
    """This process's part of cluster mode, owned by a :class:`~.relay.Relay`.

    :param settings: the app's settings (a Redis URL and a service token).
    :param hub: the relay's hub, fed with the stream's entries, epochs and statuses.
    :param lock: the relay's lock (see the module docstring).
    :param closed: whether the relay is closed; called with ``lock`` held.
    :param audience: the audience of a service-stream envelope, or ``None`` to drop it.
    :param deliver: relay ``(envelope, audience, seq)`` to the browsers (and the cache).
    :param start_service_stream: make sure this process runs the upstream service stream.
    :param service_stream: the relay's service stream, if any; called with ``lock`` held.
    :param take_service_stream: remove the relay's service stream and return it; called
        with ``lock`` held.
    """

    def __init__(
        self,
        settings: Settings,
        hub: RelayHub,
        *,
        lock: threading.Lock,
        closed: Callable[[], bool],
        audience: Callable[[dict[str, Any]], str | None],
        deliver: Callable[[dict[str, Any], str, int], None],
        start_service_stream: Callable[[], None],
        service_stream: Callable[[], UpstreamSupervisor | None],
        take_service_stream: Callable[[], UpstreamSupervisor | None],
    ) -> None:
        self.settings = settings
        self.hub = hub
        self._lock = lock
        self._closed = closed
        self._audience = audience
        self._deliver = deliver
        self._start_service_stream = start_service_stream
        self._service_stream = service_stream
        self._take_service_stream = take_service_stream
        self._mode: ClusterMode = "off"
        self._node: _ClusterNode | None = None

    @property
    def mode(self) -> ClusterMode:
        """``off``, ``starting``, ``redis`` or ``fallback`` (see :mod:`.relay`)."""
        return self._mode

    def start(self) -> None:
        """Start this process's part of the cluster (once per process); wait, bounded, for
        the event stream, else fall back to per-process mode."""
        started = False
        with self._lock:
            if self._closed():
                return
            node = self._node
            if node is None or node.pid != os.getpid():
                # A forked child has the parent's node object but none of its threads.
                node = self._node = self._new_node()
                self._mode = "starting"
                started = True
            elif self._mode in ("fallback", "rejoining"):
                return  # per-process mode serves browsers until the process has rejoined
        if started:
            node.start()
        if not node.ready.wait(CLUSTER_START_WAIT):
            self._enter_fallback("the event stream did not answer in time")

    def append(self, envelope: dict[str, Any]) -> bool:
        """A holder's upstream envelope into the event stream; whether the cluster took it
        (``False``: publish it here, per-process mode)."""
        return self._append(envelope, fall_back=True)

    def _append(self, envelope: dict[str, Any], *, fall_back: bool) -> bool:
        from .cluster import ClusterUnavailable, LeaseLost, dedup_key

        node = self._current_node()
        if node is None:
            return False
        fence = node.keeper.lease.fence
        if fence is None:
            return True  # no longer a holder: its stream is being stopped
        try:
            node.log.append(to_json(envelope), fence=fence, dedup_key=dedup_key(envelope))
        except LeaseLost:
            node.keeper.wake()
        except ClusterUnavailable as error:
            if not fall_back:
                return True  # the reader's failure, if it lasts, decides (see _watch)
            self._enter_fallback(str(error))
            return False
        return True

    def append_status(self, status: UpstreamStatus) -> bool:
        """A holder's upstream status into the event stream (see :mod:`.relay`); whether the
        cluster took it. A heartbeat that Redis missed is not worth a fallback: the next one
        follows within :data:`STATUS_HEARTBEAT` seconds."""
        node = self._current_node()
        if node is None:
            return False
        fence = node.keeper.lease.fence
        if fence is None:
            return True
        envelope = relay_status({"upstream": status, "slot": fence.slot})
        envelope["timestamp"] = int(time.time() * 1000)  # each heartbeat is new content
        return self._append(envelope, fall_back=False)

    def backfill(self, audiences: Iterable[str], since: int, relay_id: str) -> Backfill | None:
        """The stream's entries after ``since`` for a browser the rings cannot resume."""
        from .cluster import ClusterUnavailable

        audiences = list(audiences)
        node = self._current_node()
        if node is None or relay_id != node.reader.epoch:
            return None
        if self.hub.can_resume(audiences, since, relay_id):
            return None
        upto = node.reader.seq
        try:
            found = node.reader.log.replay(since, relay_id, limit=BACKFILL_LIMIT, upto=upto)
        except ClusterUnavailable:
            return None
        if found is None:
            return None
        entries = []
        for entry in found:
            envelope = _entry_envelope(entry.text)
            if envelope is None or _is_status(envelope):
                continue
            audience = self._audience(envelope)
            if audience is not None:
                entries.append((entry.seq, envelope, audience))
        return upto, entries

    def stats(self) -> dict[str, Any]:
        """What ``/health`` shows of cluster mode."""
        node = self._node
        return {"cluster": self._mode, "holder": bool(node and node.keeper.lease.held)}

    def stop(self, timeout: float) -> None:
        """Stop this process's node, if it runs here; bounded by ``timeout``."""
        with self._lock:
            node = self._node if self._node and self._node.pid == os.getpid() else None
        if node is not None:
            node.stop(timeout=timeout)

    # -- internals ------------------------------------------------------------------------

    def _new_node(self) -> _ClusterNode:
        return _ClusterNode(
            self.settings,
            on_entry=self._on_entry,
            on_epoch=self._on_epoch,
            on_gap=self._on_gap,
            on_status=self._on_cluster_status,
            on_acquired=self._on_acquired,
            on_lost=self._on_lost,
            watch=self._watch,
        )

    def _enter_fallback(self, reason: str) -> None:
        """Redis failed: this process runs its own upstream stream until Redis has answered
        again for :data:`REJOIN_AFTER` seconds (see :meth:`_watch`)."""
        with self._lock:
            node = self._node
            modes = ("starting", "redis", "rejoining")
            if self._closed() or self._mode not in modes or node is None:
                return
            rejoining = self._mode == "rejoining"
            self._mode = "fallback"
            stream = self._service_stream()
        # Another process may take this slot once Redis is back: let it go.
        threading.Thread(
            target=node.keeper.stop, name="thrillconnect-lease-stop", daemon=True
        ).start()
        if rejoining:  # its browsers never left per-process mode
            logger.info("cluster mode: Redis failed again before this process rejoined")
            return
        logger.warning(
            "cluster mode unavailable (%s): this process falls back to its own upstream stream"
            " until Redis answers again",
            reason,
        )
        self.hub.start_epoch(secrets.token_urlsafe(12), self.hub.last_seq, external=False)
        node.ready.set()
        if stream is not None:
            self.hub.set_upstream_status(
                "connected" if stream.state == CONNECTED else "reconnecting"
            )
        self._start_service_stream()

    def _rejoin(self, old: _ClusterNode) -> None:
        """Redis answers again: start a new node; its reader's first epoch switches the
        process back to cluster mode (:meth:`_on_epoch`)."""
        with self._lock:
            if self._closed() or self._mode != "fallback" or self._node is not old:
                return
            node = self._node = self._new_node()
            self._mode = "rejoining"
        logger.info("cluster mode: Redis answers again; this process rejoins the cluster")
        threading.Thread(
            target=old.stop, args=(2.0,), name="thrillconnect-node-stop", daemon=True
        ).start()
        node.start()

    def _current_node(self) -> _ClusterNode | None:
        """The node while in (or starting) Redis mode in this process."""
        with self._lock:
            node = self._node
            if self._mode not in ("starting", "redis") or node is None:
                return None
            return node if node.pid == os.getpid() else None

    # The reader's and the lease keeper's callbacks (their threads).

    def _on_entry(self, node: _ClusterNode, seq: int, text: str) -> None:
        if self._mode != "redis" or node is not self._node:
            return
        envelope = _entry_envelope(text)
        if envelope is None:
            return
        if _is_status(envelope):
            self._note_holder_status(envelope.get("data"))
            return
        audience = self._audience(envelope)
        if audience is None:
            return
        self._deliver(envelope, audience, seq)

    def _on_epoch(self, node: _ClusterNode, epoch: str, seq: int) -> None:
        own_stream = None
        with self._lock:
            modes = ("starting", "redis", "rejoining")
            if self._mode not in modes or node is not self._node:
                return
            previous = self._mode
            self._mode = "redis"
            if previous == "rejoining" and not node.keeper.lease.held:
                # The holders feed the cluster; a slot taken later starts a stream again.
                own_stream = self._take_service_stream()
        self.hub.start_epoch(epoch, seq)
        if previous == "starting":
            logger.info("cluster mode: relaying the cluster's event stream")
        elif previous == "rejoining":
            logger.warning("cluster mode: back on the cluster's event stream")
        node.ready.set()
        if own_stream is not None:
            threading.Thread(target=own_stream.stop, name="thrillconnect-stop", daemon=True).start()

    def _on_gap(self, node: _ClusterNode, seq: int, trimmed: int) -> None:
        # Entries this process never published: its rings have a hole, so start afresh.
        if self._mode == "redis" and node is self._node:
            self.hub.start_epoch(self.hub.relay_id, trimmed)

    def _on_cluster_status(self, node: _ClusterNode, available: bool) -> None:
        # Redis mode falls back only once the failure outlasts FALLBACK_GRACE (see _watch).
        node.failing_since = None if available else time.monotonic()
        if not available and self._mode == "rejoining":
            self._enter_fallback("Redis does not answer")

    def _on_acquired(self, node: _ClusterNode, fence: Any) -> None:
        if self._current_node() is not node:
            return  # while rejoining, the process's own stream already runs
        # This slot's previous holder may have died while connected.
        self.append_status("reconnecting")
        self._start_service_stream()

    def _on_lost(self, node: _ClusterNode) -> None:
        with self._lock:
            if self._mode not in ("starting", "redis") or node is not self._node:
                return
            stream = self._take_service_stream()
        if stream is not None:
            threading.Thread(target=stream.stop, name="thrillconnect-stop", daemon=True).start()

    def _note_holder_status(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        slot, status = data.get("slot"), data.get("upstream")
        node = self._current_node()
        if node is None or type(slot) is not int or status not in ("connected", "reconnecting"):
            return
        with self._lock:
            node.holder_status[slot] = (status, time.monotonic())
        self._derive_status(node)

    def _derive_status(self, node: _ClusterNode) -> None:
        now = time.monotonic()
        with self._lock:
            connected = any(
                status == "connected" and now - at < STATUS_TTL
                for status, at in node.holder_status.values()
            )
        if self._mode == "redis":
            self.hub.set_upstream_status("connected" if connected else "reconnecting")

    def _watch(self, node: _ClusterNode) -> None:
        """One thread per node: the holders' heartbeat, every process's status lapse, the
        fallback once Redis failed for :data:`FALLBACK_GRACE` seconds, and the return to the
        cluster once it answered again for :data:`REJOIN_AFTER` seconds."""
        answering_since: float | None = None
        while not node.stopping.wait(STATUS_HEARTBEAT):
            if node is not self._node:
                return
            now = time.monotonic()
            if self._mode == "fallback":
                # The reader goes on retrying: it is the probe, together with a PING.
                if node.failing_since is None and node.log.answers():
                    answering_since = now if answering_since is None else answering_since
                    if now - answering_since >= REJOIN_AFTER:
                        self._rejoin(node)
                        return
                else:
                    answering_since = None
                continue
            answering_since = None
            if self._current_node() is not node:
                continue
            failing_since = node.failing_since
            if failing_since is not None and now - failing_since >= FALLBACK_GRACE:
                self._enter_fallback("Redis does not answer")
                continue
            with self._lock:
                stream = self._service_stream()
            if stream is not None and node.keeper.lease.held:
                self.append_status("connected" if stream.state == CONNECTED else "reconnecting")
            self._derive_status(node)


def _entry_envelope(text: str) -> dict[str, Any] | None:
    try:
        envelope = parse_json(text, MAX_UPSTREAM_MESSAGE_BYTES)
    except ValueError:
        return None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("msg_name"), str):
        return None
    return envelope


def _is_status(envelope: dict[str, Any]) -> bool:
    return envelope.get("source") == "relay" and envelope.get("msg_name") == "RelayStatus"
