"""Jackpot data through the cache: one place that knows each kind's key, freshness and fetch.

The blueprint answers browsers from here and the extension's server-side
helpers read the same entries, so a page render and the widgets' first fetch
cost one upstream request between them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import schemas, validation
from .cache import CacheResult, ResponseCache
from .client import ThrillConnectClient
from .config import Settings
from .player import Player


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


class JackpotService:
    """Reads through the cache with single-flight, SWR and stale-if-error."""

    def __init__(self, settings: Settings, client: ThrillConnectClient, cache: ResponseCache):
        self.settings = settings
        self.client = client
        self.cache = cache

    def _lookup(self, key: str, kind: str, fetch: Callable[[], Any], shared: bool) -> Answer:
        ttl = self.settings.cache_ttl[kind]
        result = self.cache.lookup(key, lambda: encode_json(fetch()), ttl)
        return Answer(result, shared, ttl)

    def currencies(self) -> Answer:
        return self._lookup(
            "s:currencies",
            "currencies",
            lambda: schemas.CurrenciesSchema().dump(self.client.currencies()),
            shared=True,
        )

    def sources(self, name: str | None = None) -> Answer:
        if name is not None:
            name = validation.source_name_filter(name)
        return self._lookup(
            f"s:sources:{name or ''}",
            "sources",
            lambda: schemas.SourceSchema(many=True).dump(self.client.sources(name=name)),
            shared=True,
        )

    def jackpot(self, source_id: str, player: Player | None) -> Answer:
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
        )

    def ticker(self, instance_id: str) -> Answer:
        instance_id = validation.identifier(instance_id, "instance_id")
        return self._lookup(
            ticker_key(instance_id),
            "ticker",
            lambda: schemas.TickerSchema().dump(self.client.ticker(instance_id)),
            shared=True,
        )

    def forget_player(self, player_id: str) -> int:
        """Drop every cached answer of one player (after their opt-in changed)."""
        return self.cache.invalidate_prefix(player_prefix(player_id))
