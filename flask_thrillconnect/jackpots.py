"""Jackpot data through the cache: the one place that knows each kind's key, freshness and fetch.

The blueprint answers browsers from here, the template global renders widgets from here and
the relay feeds the live stream in here; none of them touches the cache or its keys, so a page
render and the widgets' first fetch cost one upstream request between them, and the storage
behind the cache can change (one process, or shared) without them noticing.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import metrics, models, validation
from .cache import CacheResult, ResponseCache
from .client import ThrillConnectClient
from .config import Settings
from .errors import UpstreamNotFound, UpstreamUnavailable
from .models import to_json_bytes
from .player import Player
from .upstream_guard import KnownIds, MissLimiter, NotFoundMemory

__all__ = ["STREAM_TICKER_TTL", "Answer", "JackpotService"]

logger = logging.getLogger("flask_thrillconnect.jackpots")

#: How long a ticker fed by the stream stays fresh: several missed updates (every ~3 s)
#: before the REST path takes over again.
STREAM_TICKER_TTL = 15.0
#: How long a player's cache generation is kept; longer than any entry it names lives.
GENERATION_TTL = 24 * 3600.0

_SOURCES_KEY = "s:sources:"


@dataclass(frozen=True, slots=True)
class Answer:
    """A cached body plus whether it may be shared between players."""

    result: CacheResult
    shared: bool
    ttl: float


def _ticker_key(instance_id: str) -> str:
    return f"s:ticker:{instance_id}"


class JackpotService:
    """Reads through the cache with single-flight, SWR and stale-if-error.

    Before a miss reaches upstream, the guards of :mod:`~flask_thrillconnect.upstream_guard`
    check the browser's miss budget, the id against the brand's own, and remembered 404s.
    ``requester`` names the browser (``None`` for the portal's own server-side calls).
    ``cached_only=True`` answers from the cache alone (stale included) and never asks
    upstream: :class:`~flask_thrillconnect.errors.UpstreamUnavailable` when nothing is cached.

    A player's entries carry a generation in their keys; forgetting the player (after an
    opt-in) starts a new generation, which needs no scan of the keys in any storage.
    """

    def __init__(self, settings: Settings, client: ThrillConnectClient, cache: ResponseCache):
        self.settings = settings
        self.client = client
        self._cache = cache
        self.known_ids = KnownIds(self._sources_body)
        self._not_found = NotFoundMemory()
        self._miss_limiter = MissLimiter()

    # -- reads ----------------------------------------------------------------------------

    def currencies(self, *, cached_only: bool = False) -> Answer:
        return self._lookup(
            "s:currencies",
            "currencies",
            lambda: models.CurrenciesSchema().dump(self.client.currencies()),
            shared=True,
            cached_only=cached_only,
        )

    def sources(
        self, name: str | None = None, *, requester: str | None = None, cached_only: bool = False
    ) -> Answer:
        if name is not None:
            name = validation.source_name_filter(name)
        return self._lookup(
            f"{_SOURCES_KEY}{name or ''}",
            "sources",
            lambda: self._fetch_sources(name),
            shared=True,
            requester=requester,
            cached_only=cached_only,
        )

    def jackpot(
        self,
        source_id: str,
        player: Player | None,
        *,
        requester: str | None = None,
        cached_only: bool = False,
    ) -> Answer:
        source_id = validation.identifier(source_id, "source_id")
        if player is None:
            key, shared = f"s:jackpot:{source_id}", True
            kwargs: dict[str, Any] = {}
        else:
            # Country and segments are part of the key too: they pick the instance.
            segments = ",".join(player.segments)
            generation = self._generation(player.id)
            key = f"p:{player.id}:{generation}:jackpot:{source_id}:{player.country_code}:{segments}"
            shared = False
            kwargs = {
                "player_id": player.id,
                "country_code": player.country_code,
                "segments": player.segments,
            }
        return self._lookup(
            key,
            "jackpot",
            lambda: models.JackpotSchema().dump(
                self.client.jackpot_for_source(source_id, **kwargs)
            ),
            shared=shared,
            requester=requester,
            require_known=lambda: self.require_known_source(source_id),
            cached_only=cached_only,
        )

    def ticker(
        self, instance_id: str, *, requester: str | None = None, cached_only: bool = False
    ) -> Answer:
        instance_id = validation.identifier(instance_id, "instance_id")
        return self._lookup(
            _ticker_key(instance_id),
            "ticker",
            lambda: models.TickerSchema().dump(self.client.ticker(instance_id)),
            shared=True,
            requester=requester,
            require_known=lambda: self.require_known_instance(instance_id),
            cached_only=cached_only,
        )

    def require_known_source(self, source_id: str) -> None:
        """:raises UpstreamNotFound: the id is not one of the brand's sources."""
        if not self.known_ids.is_source(source_id):
            raise UpstreamNotFound("no such source for this brand", error="not_found")

    def require_known_instance(self, instance_id: str) -> None:
        """:raises UpstreamNotFound: the id is not an instance of the brand's sources."""
        if not self.known_ids.is_instance(instance_id):
            raise UpstreamNotFound("no such jackpot instance for this brand", error="not_found")

    # -- what the live stream and opt-ins change -----------------------------------------------

    def apply_jackpot_update(self, update: dict[str, Any]) -> bool:
        """Patch the cached ticker with a ``JackpotUpdate``'s pot values, so tickers need no
        REST call while the stream is up; answers whether a ticker was patched.

        Only an entry the REST path created is patched: a JackpotUpdate lacks fields the
        ticker has (``community_split``).
        """
        instance_id = update.get("id")
        if not isinstance(instance_id, str):
            return False
        key = _ticker_key(instance_id)
        cached = self._cache.peek(key)
        if cached is None:
            return False
        try:
            ticker = json.loads(cached.entry.value)
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
        self._cache.put(key, to_json_bytes(ticker), STREAM_TICKER_TTL)
        return True

    def refresh_ticker(self, instance_id: str) -> Answer:
        """Fetch a ticker afresh (after the stream was down and may have missed updates)."""
        self._cache.invalidate(_ticker_key(validation.identifier(instance_id, "instance_id")))
        return self.ticker(instance_id)

    def forget_player(self, player_id: str) -> None:
        """Drop every cached answer of one player (after their opt-in changed)."""
        self._new_generation(player_id)

    # -- operations -------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every cached answer and remembered 404 (``ThrillConnect.cache_clear``)."""
        self._cache.clear()
        self._not_found = NotFoundMemory()
        self.known_ids = KnownIds(self._sources_body)

    def expire(self) -> None:
        """Make every cached answer stale now (``ThrillConnect.cache_expire``)."""
        self._cache.expire()

    def cache_stats(self) -> dict[str, int | str]:
        """The cache's figures for ``/health``."""
        return self._cache.stats()

    def close(self) -> None:
        """Stop background refreshes."""
        self._cache.close()

    # -- inside ---------------------------------------------------------------------------------

    def _lookup(
        self,
        key: str,
        kind: str,
        fetch: Callable[[], Any],
        shared: bool,
        requester: str | None = None,
        require_known: Callable[[], None] | None = None,
        cached_only: bool = False,
    ) -> Answer:
        ttl = self.settings.cache_ttl[kind]
        if cached_only:
            peeked = self._cache.peek(key)
            if peeked is None:
                raise UpstreamUnavailable("not cached, and ThrillConnect is not asked now")
            return Answer(peeked, shared, ttl)
        if self._cache.would_fetch(key):
            # Cheapest first; refusals here cost upstream nothing and the browser no budget.
            if self._not_found.knows(key):
                raise UpstreamNotFound("ThrillConnect has no such jackpot data", error="not_found")
            if require_known is not None:
                require_known()
            if requester is not None:
                self._miss_limiter.take(requester)
        result = self._cache.lookup(
            key, lambda: to_json_bytes(self._remembering_404(key, fetch)), ttl
        )
        metrics.cache_answer(kind, result.status)
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
            body = to_json_bytes(self._fetch_sources(None))
            entry = self._cache.put(_SOURCES_KEY, body, self.settings.cache_ttl["sources"])
        else:
            entry = self.sources().result.entry
        return entry.value, entry.etag

    def _fetch_sources(self, name: str | None) -> Any:
        return models.SourceSchema(many=True).dump(self.client.sources(name=name))

    def _generation(self, player_id: str) -> str:
        """The player's current cache generation; a new one when none is kept (so entries of a
        forgotten generation can never come back, even if the record was evicted)."""
        cached = self._cache.peek(f"g:{player_id}")
        return (
            cached.entry.value.decode() if cached is not None else self._new_generation(player_id)
        )

    def _new_generation(self, player_id: str) -> str:
        generation = secrets.token_hex(6)
        self._cache.put(f"g:{player_id}", generation.encode(), GENERATION_TTL)
        return generation
