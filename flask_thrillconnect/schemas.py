"""Transitional: the wire models moved to :mod:`flask_thrillconnect.models`.

This module only re-exports the names that modules not yet switched still import; import
from :mod:`flask_thrillconnect.models` (and limits from :mod:`flask_thrillconnect.limits`)
instead. It goes away once nothing imports it.
"""

from __future__ import annotations

from .limits import MAX_CONTRIBUTION, MAX_SUBSCRIPTIONS
from .models import (
    CLIENT_REQUESTS,
    EVENT_SOURCES,
    CorsOriginSchema,
    Currencies,
    CurrenciesSchema,
    Jackpot,
    JackpotPot,
    JackpotSchema,
    OptInEvent,
    OptInEventSchema,
    PlayerOptInRequest,
    Source,
    SourceSchema,
    SubscribeRequest,
    Ticker,
    TickerPot,
    TickerSchema,
    contribution_range,
    load_client_request,
    parse_json,
    to_json,
)

#: The request names the relay takes (``PlayerOptInRequestV2`` and
#: ``PlayerRaffleTicketsRequest`` are tests' models now: tests/wire_models.py).
CLIENT_REQUEST_NAMES = tuple(CLIENT_REQUESTS)

__all__ = [
    "CLIENT_REQUEST_NAMES",
    "EVENT_SOURCES",
    "MAX_CONTRIBUTION",
    "MAX_SUBSCRIPTIONS",
    "CorsOriginSchema",
    "Currencies",
    "CurrenciesSchema",
    "Jackpot",
    "JackpotPot",
    "JackpotSchema",
    "OptInEvent",
    "OptInEventSchema",
    "PlayerOptInRequest",
    "Source",
    "SourceSchema",
    "SubscribeRequest",
    "Ticker",
    "TickerPot",
    "TickerSchema",
    "contribution_range",
    "load_client_request",
    "parse_json",
    "to_json",
]
