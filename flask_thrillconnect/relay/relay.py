"""The relay of one app: upstream streams in, the hub out, the cache fed on the way.

With ``THRILLCONNECT_SERVICE_TOKEN`` the process keeps one service stream (every
event of the operator, player-targeted ones included). Without it, each player
whose browser is connected gets a player stream with their wallet token, shared
by all their tabs and closed when the last one leaves; brand broadcasts are taken
from one of those streams only (the "primary"), so each reaches browsers once.

**Cluster mode** (``THRILLCONNECT_REDIS_URL`` with a service token), started lazily by the
first browser (so in the worker, after any fork):

- every process reads the cluster's event stream (:class:`~.cluster.EventReader`) and
  publishes each entry to its hub with the entry's ``seq`` (the stream's epoch is the hub's
  ``relay_id``), routed by the same rules as before, feeding the cache as before;
- the processes holding a lease slot (``THRILLCONNECT_STREAM_HOLDERS``) run the upstream
  service stream and append each envelope to the stream (fenced, de-duplicated) instead of
  publishing it; a holder that loses its slot stops its upstream stream;
- upstream status: each holder appends a ``RelayStatus`` entry naming its slot when its
  stream goes up or down, and again every :data:`~.cluster_mode.STATUS_HEARTBEAT` seconds.
  Every process says "connected" while some slot's latest status, seen less than
  :data:`~.cluster_mode.STATUS_TTL` seconds ago, says so (a killed holder's "connected"
  lapses after that);
- a browser resuming with the stream's epoch and a ``since`` older than the process's rings
  is backfilled from the stream (at most :data:`~.cluster_mode.BACKFILL_LIMIT` entries);
- when Redis does not answer (at start, or for :data:`~.cluster_mode.FALLBACK_GRACE` seconds
  later), the process falls back to per-process mode (its own upstream stream, ``seq`` and
  ``relay_id``; browsers are closed with 1012 and reconnect) and logs it once;
- once Redis has answered again for :data:`~.cluster_mode.REJOIN_AFTER` seconds, the process
  rejoins: a new node reads the stream while the process still serves its browsers on its
  own; when the node has the stream's epoch, the process switches back (browsers are closed
  with 1012 once more and reconnect to the cluster's ``seq`` space; a ``since`` of the
  fallback's space gets ``"resumed": false``) and stops its own upstream stream unless it
  holds a slot.

That machinery is :class:`~.cluster_mode.ClusterFeed`, which the :class:`Relay` owns; this
module keeps per-process mode and the routing rules both modes share.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from .. import metrics
from ..client import ThrillConnectClient
from ..config import Settings
from ..errors import ThrillConnectError
from ..jackpots import JackpotService
from ..limits import MAX_UPSTREAM_MESSAGE_BYTES
from ..log_events import RateLimit, log_event
from ..models import parse_json, player_opt_in_request_json
from ..optin import send_opt_in
from ..player import Player
from .cluster_mode import ClusterFeed, ClusterMode
from .hub import BROADCAST, Connection, RelayHub, UpstreamStatus, player_audience
from .protocol import CLOSE_TRY_AGAIN_LATER, error_envelope
from .upstream import CONNECTED, UpstreamSupervisor
from .writer import SocketWriter

__all__ = ["Relay"]

logger = logging.getLogger("flask_thrillconnect.relay")

#: What the relay asks ThrillConnect for; browsers then subscribe to what they want.
UPSTREAM_SUBSCRIPTIONS = (
    {"source": "thrillpots", "event_type": "*"},
    {"source": "thrillgate", "event_type": "*"},
    {"source": "thrilldrops", "event_type": "*"},
)
#: Events ThrillConnect sends to service connections for the operator's back office only.
SERVICE_ONLY_EVENTS = frozenset({"CommunityPayoutErrorEvent", "RafflePayoutErrorEvent"})
#: The envelope keys relayed to browsers; anything else upstream adds stays behind.
ENVELOPE_KEYS = (
    "msg_type", "source", "msg_name", "operator_id", "brand_id", "player_id", "data", "timestamp",
)  # fmt: skip
#: The most instances whose tickers the relay refreshes after a reconnect.
MAX_KNOWN_INSTANCES = 1000
#: Opt-ins sent on a fresh player connection at once (each waits for its answer).
OPTIN_WORKERS = 4
#: Seconds during which further ``relay_overflow`` events are counted, not logged.
OVERFLOW_LOG_INTERVAL = 10.0


class Relay:
    """Owns the hub, the writer thread, the upstream streams and the opt-in workers of one app
    in one process; :meth:`close` ends them all."""

    def __init__(
        self, settings: Settings, client: ThrillConnectClient, service: JackpotService
    ) -> None:
        self.settings = settings
        self.client = client
        self.service = service
        self.writer = SocketWriter()
        self.hub = RelayHub(
            on_ready=self.writer.sources_ready,
            on_published=self.writer.published,
            on_player_audience=self._on_player_audience,
        )
        self._lock = threading.Lock()
        self._optin_pool: ThreadPoolExecutor | None = None
        self._optin_pool_pid = 0
        self._service_stream: UpstreamSupervisor | None = None
        self._player_streams: OrderedDict[str, UpstreamSupervisor] = OrderedDict()
        self._players: dict[str, Player] = {}
        self._known_instances: OrderedDict[str, None] = OrderedDict()
        self._refreshing = threading.Lock()
        self._closed = False
        self._overflow_log = RateLimit(OVERFLOW_LOG_INTERVAL)
        self._cluster = ClusterFeed(
            settings,
            self.hub,
            lock=self._lock,
            closed=lambda: self._closed,
            audience=lambda envelope: self._audience(envelope, None),
            deliver=self._deliver_entry,
            start_service_stream=self._ensure_service_stream,
            service_stream=lambda: self._service_stream,
            take_service_stream=self._take_service_stream_locked,
        )

    # -- browsers ---------------------------------------------------------------------------

    def connect(
        self, player: Player | None, *, since: int | None = None, relay_id: str | None = None
    ) -> Connection:
        """Join a browser to its audiences and make sure an upstream stream feeds them."""
        audiences = [BROADCAST]
        if player is not None:
            with self._lock:
                # The latest Player wins: it carries the freshest wallet token.
                self._players[player.id] = player
            audiences.append(player_audience(player.id))
        backfill = None
        if self._uses_cluster():
            self._cluster.start()
            if since is not None and relay_id is not None:
                backfill = self._cluster.backfill(audiences, since, relay_id)
        connection = self.hub.connect(audiences, since=since, relay_id=relay_id, backfill=backfill)
        metrics.browser_connected()
        if self.settings.service_token and self.cluster_mode in ("off", "fallback", "rejoining"):
            self._ensure_service_stream()
        return connection

    def disconnect(self, connection: Connection) -> None:
        """The browser of ``connection`` left (once per :meth:`connect`)."""
        self.hub.disconnect(connection)
        metrics.browser_disconnected()
        if connection.close_code == CLOSE_TRY_AGAIN_LATER:
            self._log_overflow(connection)

    def _log_overflow(self, connection: Connection) -> None:
        held = self._overflow_log.admit("overflow")
        if held is None:
            return
        more = f" ({held} more in the last {OVERFLOW_LOG_INTERVAL:g} s)" if held else ""
        log_event(
            logger,
            logging.WARNING,
            "relay_overflow",
            f"a browser fell more than {connection.limit} events behind and was closed with "
            f"1013 (it reconnects and resumes){more}",
            code=CLOSE_TRY_AGAIN_LATER,
            limit=connection.limit,
            audience="player" if len(connection.audiences) > 1 else "broadcast",
            suppressed=held,
        )

    def opt_in(
        self,
        player: Player,
        instance_id: str,
        opt_in: bool,
        contribution_value: Decimal | None,
        *,
        timeout: float,
    ) -> None:
        """Send a browser's ``PlayerOptInRequest`` upstream, with the identity from the session.

        The answer (an ``OptInEvent``, or an ``Error`` such as ``not_eligible``) reaches the
        player's browsers as an event; this returns at once. On the player's own stream when
        the relay keeps one, else on a fresh player connection from a worker thread.
        """
        message = player_opt_in_request_json(
            instance_id=instance_id,
            player_id=player.id,
            brand_id=self.settings.owner_id,
            player_country=player.country_code,
            opt_in=opt_in,
            contribution_value=contribution_value,
        )
        if self.send_for_player(player, message):
            return  # the answer comes back on the player's stream
        pool = self._optin_workers()
        if pool is None:
            return  # closing: the browser is about to be told (1001)
        with contextlib.suppress(RuntimeError):  # shut down meanwhile
            pool.submit(
                self._opt_in_on_fresh_stream,
                player,
                instance_id,
                opt_in,
                contribution_value,
                timeout,
            )

    def send_for_player(self, player: Player, message: str) -> bool:
        """Send a request's text on the player's own upstream stream, when the relay keeps
        one."""
        with self._lock:
            stream = self._player_streams.get(player.id)
        return stream is not None and stream.send(message)

    def tell_player(self, player_id: str, msg_name: str, code: str, message: str) -> None:
        """An ``Error`` envelope to one player's browsers (the answer to their request)."""
        self.hub.publish(
            error_envelope(
                msg_name,
                code,
                message,
                player_id=player_id,
                operator_id=self.settings.operator_id,
                brand_id=self.settings.brand_id,
            ),
            player_audience(player_id),
        )

    def _opt_in_on_fresh_stream(
        self,
        player: Player,
        instance_id: str,
        opt_in: bool,
        contribution_value: Decimal | None,
        timeout: float,
    ) -> None:
        try:
            send_opt_in(
                self.client, player, instance_id, opt_in, contribution_value, timeout=timeout
            )
        except ThrillConnectError as exc:
            code = getattr(exc, "error", None) or "upstream_error"
            self.tell_player(player.id, "PlayerOptInRequest", code, exc.public_message)
        # Success needs nothing here: the OptInEvent reaches the player's audience through
        # the service stream.

    def _optin_workers(self) -> ThreadPoolExecutor | None:
        """The opt-in workers, started on first use (and afresh in a forked child); ``None``
        once closed."""
        with self._lock:
            if self._closed:
                return None
            if self._optin_pool is None or self._optin_pool_pid != os.getpid():
                # A forked child has the parent's pool object but none of its threads.
                self._optin_pool = ThreadPoolExecutor(
                    max_workers=OPTIN_WORKERS, thread_name_prefix="thrillconnect-optin"
                )
                self._optin_pool_pid = os.getpid()
            return self._optin_pool

    # -- upstream streams -------------------------------------------------------------------

    def _ensure_service_stream(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._service_stream is None:
                self._service_stream = self._supervisor(
                    self.client.service_stream_url, player_id=None, name="thrillconnect-service"
                )
            stream = self._service_stream
        # start() is idempotent and starts afresh in a forked child.
        stream.start()

    def _supervisor(self, url: Any, *, player_id: str | None, name: str) -> UpstreamSupervisor:
        gauge = metrics.StreamState("service" if player_id is None else "player")

        def on_state(state: str, reconnected: bool) -> None:
            gauge.changed(state, reconnected)
            self._on_state(state, reconnected, player_id)

        return UpstreamSupervisor(
            url,
            subscriptions=UPSTREAM_SUBSCRIPTIONS,
            on_message=lambda text: self._on_message(text, player_id),
            on_state=on_state,
            open_timeout=self.settings.timeout[0],
            name=name,
        )

    def _on_player_audience(self, player_id: str, active: bool) -> None:
        """The hub's news that a player's first tab arrived or their last one left."""
        if self.settings.service_token:
            if not active:
                with self._lock:
                    self._players.pop(player_id, None)
            return
        if active:
            self._start_player_stream(player_id)
        else:
            self._stop_player_stream(player_id)

    def _start_player_stream(self, player_id: str) -> None:
        with self._lock:
            player = self._players.get(player_id)
            if self._closed or player is None or player_id in self._player_streams:
                return
            stream = self._supervisor(
                lambda: self.client.player_stream_url(player.token, player.currency),
                player_id=player_id,
                name=f"thrillconnect-player-{player_id}",
            )
            self._player_streams[player_id] = stream
        stream.start()

    def _stop_player_stream(self, player_id: str) -> None:
        with self._lock:
            stream = self._player_streams.pop(player_id, None)
            self._players.pop(player_id, None)
            primary_changed = stream is not None and not self._player_streams
        if stream is not None:
            # Off the browser's thread: closing waits for the close handshake.
            threading.Thread(target=stream.stop, name="thrillconnect-stop", daemon=True).start()
        if primary_changed:
            self.hub.set_upstream_status("reconnecting")

    def _is_primary(self, player_id: str | None) -> bool:
        if player_id is None:
            return True
        with self._lock:
            return next(iter(self._player_streams), None) == player_id

    # -- events -----------------------------------------------------------------------------

    def _on_message(self, text: str, stream_player: str | None) -> None:
        """Route one upstream message to its audience; runs on the supervisor's thread."""
        try:
            envelope = parse_json(text, MAX_UPSTREAM_MESSAGE_BYTES)
        except ValueError:
            logger.warning("ignored an upstream message that is not JSON")
            return
        if not isinstance(envelope, dict) or not isinstance(envelope.get("msg_name"), str):
            logger.warning("ignored an upstream message that is not an envelope")
            return
        audience = self._audience(envelope, stream_player)
        if audience is None:
            return
        relayed = {key: envelope.get(key) for key in ENVELOPE_KEYS}
        if stream_player is None and self._cluster.append(relayed):
            # Every process's reader publishes it; the shared cache is fed here, by the
            # holders only, rather than by every reader of the cluster.
            self._feed_cache(relayed)
            return
        self._feed_cache(relayed)
        self.hub.publish(relayed, audience)

    def _audience(self, envelope: dict[str, Any], stream_player: str | None) -> str | None:
        name, kind = envelope["msg_name"], envelope.get("msg_type")
        if name in SERVICE_ONLY_EVENTS:
            return None
        if envelope.get("operator_id") not in (None, self.settings.operator_id):
            return None
        # A service stream carries every brand of the operator: keep the portal's.
        if envelope.get("brand_id") not in (None, self.settings.brand_id, self.settings.owner_id):
            return None
        player_id = envelope.get("player_id")
        if kind == "Error" or kind == "Message":
            # Answers to requests: only a player stream's belong to a browser (its player's).
            return player_audience(stream_player) if stream_player else None
        if isinstance(player_id, str) and player_id:
            return player_audience(player_id)
        return BROADCAST if self._is_primary(stream_player) else None

    def _feed_cache(self, envelope: dict[str, Any]) -> None:
        name, data = envelope["msg_name"], envelope.get("data")
        if not isinstance(data, dict):
            return
        if name == "JackpotUpdate" and isinstance(data.get("id"), str):
            self._remember_instance(data["id"])
            self.service.apply_jackpot_update(data)
        elif name == "OptInEvent" and isinstance(data.get("player_id"), str):
            self.service.forget_player(data["player_id"])

    def _remember_instance(self, instance_id: str) -> None:
        with self._lock:
            self._known_instances[instance_id] = None
            self._known_instances.move_to_end(instance_id)
            while len(self._known_instances) > MAX_KNOWN_INSTANCES:
                self._known_instances.popitem(last=False)

    def _on_state(self, state: str, reconnected: bool, stream_player: str | None) -> None:
        if not self._is_primary(stream_player):
            return
        status: UpstreamStatus = "connected" if state == CONNECTED else "reconnecting"
        if stream_player is None and self._cluster.append_status(status):
            pass  # every process derives its status from the holders' entries
        else:
            self.hub.set_upstream_status(status)
        if state == CONNECTED and reconnected:
            self._refresh_snapshot_soon()

    def _refresh_snapshot_soon(self) -> None:
        """After a reconnect, events may have been missed: re-read the tickers over REST."""
        if not self._refreshing.acquire(blocking=False):
            return  # one refresh at a time is enough
        threading.Thread(
            target=self._refresh_snapshot, name="thrillconnect-refresh", daemon=True
        ).start()

    def _refresh_snapshot(self) -> None:
        try:
            with self._lock:
                instance_ids = list(self._known_instances)
            for instance_id in instance_ids:
                if self._closed:
                    return
                try:
                    answer = self.service.refresh_ticker(instance_id)
                except ThrillConnectError as exc:
                    logger.info("ticker refresh of %s failed: %s", instance_id, exc)
                    continue
                update = self._update_from_ticker(answer.result.entry.value)
                if not self._cluster.append(update):
                    self.hub.publish(update, BROADCAST)
        finally:
            self._refreshing.release()

    def _update_from_ticker(self, body: bytes) -> dict[str, Any]:
        """A ``JackpotUpdate`` envelope carrying a ticker's values (numbers, as upstream sends)."""
        ticker = json.loads(body, parse_float=Decimal)
        data = {
            **ticker,
            "pots": [
                {"id": p["id"], "is_progressive": p["is_progressive"],
                 "current_value": float(Decimal(p["current_value"]))}
                for p in ticker["pots"]
            ],
        }  # fmt: skip
        return {
            "msg_type": "Event",
            "source": "thrillpots",
            "msg_name": "JackpotUpdate",
            "operator_id": self.settings.operator_id,
            "brand_id": self.settings.brand_id,
            "player_id": None,
            "data": data,
            "timestamp": int(time.time() * 1000),
        }

    # -- cluster mode (see .cluster_mode) ------------------------------------------------

    @property
    def cluster_mode(self) -> ClusterMode:
        """``off``, ``starting``, ``redis`` or ``fallback`` (see the module docstring)."""
        return self._cluster.mode

    def _uses_cluster(self) -> bool:
        return bool(self.settings.redis_url and self.settings.service_token)

    def _deliver_entry(self, envelope: dict[str, Any], audience: str, seq: int) -> None:
        # The holders fed the shared cache when they appended the entry (see _on_message).
        self.hub.publish(envelope, audience, seq=seq)

    def _take_service_stream_locked(self) -> UpstreamSupervisor | None:
        stream, self._service_stream = self._service_stream, None
        return stream

    # -- operations -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """What ``/health`` shows: the upstream streams and the hub's totals (no player ids)."""
        with self._lock:
            service = self._service_stream
            players = list(self._player_streams.values())
        hub = self.hub.stats()
        streams: dict[str, Any]
        if service is not None:
            streams = {"mode": "service", **_stream_stats(service)}
        elif self.settings.service_token:
            streams = {"mode": "service", "state": "idle"}
        else:
            states = [stream.state for stream in players]
            streams = {
                "mode": "player",
                "streams": len(players),
                "connected": states.count(CONNECTED),
            }
        cluster = self._cluster.stats() if self.settings.redis_url is not None else {}
        return {
            "upstream": streams,
            # What browsers are told: in cluster mode, the holders' status, not this process's.
            "upstream_status": self.hub.upstream_status,
            **cluster,
            "browsers": hub.connections,
            "published": hub.published,
            "deliveries": hub.deliveries,
            "conflated": hub.conflated,
            "overflow_closes": hub.overflow_closes,
            # What a tick costs per browser here: its send, mostly (see bench.writer_pass).
            "pass_us_per_browser": round(self.writer.flush_cost * 1e6, 1),
        }

    def close(self, timeout: float = 5.0) -> None:
        """Close browsers with 1001, every upstream stream and the opt-in workers; bounded by
        ``timeout``."""
        with self._lock:
            self._closed = True
            streams = [s for s in (self._service_stream, *self._player_streams.values()) if s]
            self._player_streams.clear()
            pool, self._optin_pool = self._optin_pool, None
            if self._optin_pool_pid != os.getpid():
                pool = None  # the parent's: nothing of it runs here
        if pool is not None:
            # Opt-ins under way end by themselves (each bounded by its timeout).
            pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        self.hub.close()
        # Let the writer hand every browser its last frames, then the close (1001).
        while self.writer.peers and time.monotonic() < deadline:
            time.sleep(0.02)
        self.writer.close(timeout=max(0.1, deadline - time.monotonic()))
        self._cluster.stop(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
        for stream in streams:
            stream.stop(timeout=max(0.1, deadline - time.monotonic()))


def _stream_stats(stream: UpstreamSupervisor) -> dict[str, Any]:
    stats = stream.stats()
    return {
        "state": stats["state"],
        "connects": stats["connects"],
        "reconnects": stats["reconnects"],
        "messages": stats["messages"],
        "last_message_at": stats["last_message_at"],
        "last_error": stats["last_error"],
    }
