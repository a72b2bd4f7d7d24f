"""Jackpot data through the cache: one place that knows each kind's key, freshness and fetch.

The blueprint answers browsers from here and the extension's server-side
helpers read the same entries, so a page render and the widgets' first fetch
cost one upstream request between them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import schemas, validation
from .cache import CacheResult, ResponseCache
from .client import ThrillConnectClient
from .config import Settings
from .errors import UpstreamNotFound
from .player import Player
from .upstream_guard import KnownIds, MissLimiter, NotFoundMemory


@dataclass(frozen=True, slots=True)
class Answer:
    """A cached body plus whether it may be shared between players."""

    result: CacheResult
    shared: bool
    ttl: float


def encode_json(payload: Any) -> bytes:
    """Compact JSON bytes; Decimals the schemas left as numbers stay exact."""
    return json.dumps(payload, separators=(",", ":"), default=_decimal_to_json).encode()


def _decimal_to_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Upstream sends these as JSON numbers; float() of a 2-decimal Decimal
        # prints back as the same digits.
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def ticker_key(instance_id: str) -> str:
    return f"s:ticker:{instance_id}"


def player_prefix(player_id: str) -> str:
    """Every cache key of one player starts with this, so they go in one call."""
    return f"p:{player_id}:"


SOURCES_KEY = "s:sources:"
#: How long a ticker fed by the stream stays fresh: several missed updates (every ~3 s)
#: before the REST path takes over again.
STREAM_TICKER_TTL = 15.0

logger = logging.getLogger("flask_thrillconnect.service")


class JackpotService:
    """Reads through the cache with single-flight, SWR and stale-if-error.

    Before a miss reaches upstream, the guards of :mod:`~flask_thrillconnect.upstream_guard`
    check the browser's miss budget, the id against the brand's own, and remembered 404s.
    ``requester`` names the browser (``None`` for the portal's own server-side calls).
    """

    def __init__(self, settings: Settings, client: ThrillConnectClient, cache: ResponseCache):
        self.settings = settings
        self.client = client
        self.cache = cache
        self.known_ids = KnownIds(self._sources_body)
        self._not_found = NotFoundMemory()
        self._miss_limiter = MissLimiter()

    def _lookup(
        self,
        key: str,
        kind: str,
        fetch: Callable[[], Any],
        shared: bool,
        requester: str | None = None,
        require_known: Callable[[], None] | None = None,
    ) -> Answer:
        if self.cache.would_fetch(key):
            # Cheapest first; refusals here cost upstream nothing and the browser no budget.
            if self._not_found.knows(key):
                raise UpstreamNotFound("ThrillConnect has no such jackpot data", error="not_found")
            if require_known is not None:
                require_known()
            if requester is not None:
                self._miss_limiter.take(requester)
        ttl = self.settings.cache_ttl[kind]
        result = self.cache.lookup(key, lambda: encode_json(self._remembering_404(key, fetch)), ttl)
        return Answer(result, shared, ttl)

    def _remembering_404(self, key: str, fetch: Callable[[], Any]) -> Any:
        try:
            return fetch()
        except UpstreamNotFound:
            self._not_found.remember(key)
            raise

    def _sources_body(self, force: bool) -> tuple[bytes, str]:
        """The brand's unfiltered sources body and ETag; ``force``: fetched afresh and stored,
        the cached copy kept if upstream fails."""
        if force:
            body = encode_json(self._fetch_sources(None))
            entry = self.cache.put(SOURCES_KEY, body, self.settings.cache_ttl["sources"])
        else:
            entry = self.sources().result.entry
        return entry.value, entry.etag

    def _fetch_sources(self, name: str | None) -> Any:
        return schemas.SourceSchema(many=True).dump(self.client.sources(name=name))

    def currencies(self) -> Answer:
        return self._lookup(
            "s:currencies",
            "currencies",
            lambda: schemas.CurrenciesSchema().dump(self.client.currencies()),
            shared=True,
        )

    def sources(self, name: str | None = None, *, requester: str | None = None) -> Answer:
        if name is not None:
            name = validation.source_name_filter(name)
        return self._lookup(
            f"{SOURCES_KEY}{name or ''}",
            "sources",
            lambda: self._fetch_sources(name),
            shared=True,
            requester=requester,
        )

    def jackpot(
        self, source_id: str, player: Player | None, *, requester: str | None = None
    ) -> Answer:
        source_id = validation.identifier(source_id, "source_id")
        if player is None:
            key, shared = f"s:jackpot:{source_id}", True
            kwargs: dict[str, Any] = {}
        else:
            # Country and segments are part of the key too: they pick the instance.
            segments = ",".join(player.segments)
            key = f"{player_prefix(player.id)}jackpot:{source_id}:{player.country_code}:{segments}"
            shared = False
            kwargs = {
                "player_id": player.id,
                "country_code": player.country_code,
                "segments": player.segments,
            }
        return self._lookup(
            key,
            "jackpot",
            lambda: schemas.JackpotSchema().dump(
                self.client.jackpot_for_source(source_id, **kwargs)
            ),
            shared=shared,
            requester=requester,
            require_known=lambda: self.require_known_source(source_id),
        )

    def ticker(self, instance_id: str, *, requester: str | None = None) -> Answer:
        instance_id = validation.identifier(instance_id, "instance_id")
        return self._lookup(
            ticker_key(instance_id),
            "ticker",
            lambda: schemas.TickerSchema().dump(self.client.ticker(instance_id)),
            shared=True,
            requester=requester,
            require_known=lambda: self.require_known_instance(instance_id),
        )

    def require_known_source(self, source_id: str) -> None:
        """:raises UpstreamNotFound: the id is not one of the brand's sources."""
        if not self.known_ids.is_source(source_id):
            raise UpstreamNotFound("no such source for this brand", error="not_found")

    def require_known_instance(self, instance_id: str) -> None:
        """:raises UpstreamNotFound: the id is not an instance of the brand's sources."""
        if not self.known_ids.is_instance(instance_id):
            raise UpstreamNotFound("no such jackpot instance for this brand", error="not_found")

    # -- what the live stream changes --------------------------------------------------------

    def apply_jackpot_update(self, update: dict[str, Any]) -> bool:
        """Patch the cached ticker with a ``JackpotUpdate``'s pot values, so tickers need no
        REST call while the stream is up; answers whether a ticker was patched.

        Only an entry the REST path created is patched: a JackpotUpdate lacks fields the
        ticker has (``community_split``).
        """
        instance_id = update.get("id")
        if not isinstance(instance_id, str):
            return False
        key = ticker_key(instance_id)
        entry = self.cache.storage.get(key)
        if entry is None:
            return False
        try:
            ticker = json.loads(entry.value)
            values = {pot["id"]: pot["current_value"] for pot in update.get("pots", ())}
            for pot in ticker["pots"]:
                if pot["id"] in values:
                    # repr() of a float is its shortest exact decimal: 10.53 → "10.53".
                    pot["current_value"] = str(Decimal(repr(values[pot["id"]])))
            for field in ("status", "last_updated", "timestamp_start", "timestamp_end"):
                if field in update:
                    ticker[field] = update[field]
        except (KeyError, TypeError, ValueError, ArithmeticError):
            logger.warning(
                "could not apply a JackpotUpdate to the cached ticker of %s", instance_id
            )
            return False
        self.cache.put(key, encode_json(ticker), STREAM_TICKER_TTL)
        return True

    def refresh_ticker(self, instance_id: str) -> Answer:
        """Fetch a ticker afresh (after the stream was down and may have missed updates)."""
        self.cache.invalidate(ticker_key(instance_id))
        return self.ticker(instance_id)

    def forget_player(self, player_id: str) -> int:
        """Drop every cached answer of one player (after their opt-in changed)."""
        return self.cache.invalidate_prefix(player_prefix(player_id))
