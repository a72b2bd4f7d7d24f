"""Wire models only the tests use: the events and requests the package does not act on.

The package loads the ``data`` of the events it reads (``OptInEvent``, ``Error``) and the
requests it relays (``SubscribeRequest``, ``PlayerOptInRequest``). The tests check every
documented shape, so the rest of THRILLCONNECT_API.md lives here, built the package's way
(:func:`~flask_thrillconnect.models.wire_schema`), with loaders that know all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from flask_thrillconnect import models
from flask_thrillconnect.models import schema_for, to_json
from flask_thrillconnect.models.fields import (
    Contribution,
    Count,
    CountryCode,
    Identifier,
    Nullable,
    Timestamp,
)
from flask_thrillconnect.models.rest import JackpotStatus, JackpotType, Multipliers

# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JackpotUpdatePot:
    """A pot in a ``JackpotUpdate`` (money as numbers, in the jackpot's currency)."""

    id: str
    is_progressive: bool
    current_value: Decimal
    community_split: Decimal | None = None
    instance_count: Count | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JackpotUpdate:
    """``thrillpots/JackpotUpdate``: a ticker's values, with money as numbers."""

    id: str
    jackpot_type: JackpotType
    currency: str
    pots: tuple[JackpotUpdatePot, ...]
    allowed_brands: tuple[str, ...]
    allowed_sources: tuple[str, ...]
    status: JackpotStatus
    timestamp_start: Timestamp
    timestamp_end: Nullable[Timestamp] = None
    last_updated: Timestamp


@dataclass(frozen=True, slots=True, kw_only=True)
class CurrencyMultipliers:
    """The exchange rates attached to a win, for showing it in other currencies."""

    brand_id: str | None = None
    base_currency: str
    multipliers: Multipliers


@dataclass(frozen=True, slots=True)
class CommunityWinner:
    """A player paid a share of a win (community winners, raffle winners)."""

    player_id: str
    brand_id: str
    currency: str
    win_amount: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class WinEvent:
    """``thrillpots/WinEvent``: a pot was won (broadcast to every player of the brand)."""

    brand_id: str
    player_id: str
    source_id: str | None = None
    instance_id: str
    jackpot_name: str | None = None
    jackpot_currency: str
    timestamp: Timestamp
    win_pot_id: str
    win_amount: Decimal
    currency_multipliers: CurrencyMultipliers | None = None
    # ⚙ The vendor names these without types: a flag, source ids, the reseed value and an
    # open object, as the simulator sends them.
    win_withheld: bool | None = None
    community_winners: tuple[CommunityWinner, ...] = ()
    games_in_jackpot: tuple[str, ...] | None = None
    seed: Decimal | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RaffleWinEvent:
    """``thrillpots/RaffleWinEvent``: a raffle was drawn."""

    brand_id: str
    instance_id: str
    jackpot_name: str | None = None
    jackpot_currency: str
    currency_multipliers: CurrencyMultipliers | None = None
    timestamp: Timestamp
    winners: tuple[CommunityWinner, ...]
    win_withheld: bool | None = None


@dataclass(frozen=True, slots=True)
class BonusAvailability:
    """Where a bonus may be used: a game provider and some of its games."""

    provider_id: str
    game_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayerBonus:
    """``thrillgate/PlayerBonus*`` events: a player's free-bet bonus and its state."""

    id: str
    promo_id: str | None = None
    bonus_instance_id: str | None = None
    available_for: tuple[BonusAvailability, ...] = ()
    # {"Freespins": {...}}: an open, externally tagged union; kept as sent.
    bonus_data: Any = None
    state: Literal["Available", "Consumed", "Expired"]
    # Documented as always present; null until the bonus is consumed/expires.
    timestamp_bonus_awarded: Nullable[Timestamp] = None
    timestamp_bonus_expires: Nullable[Timestamp] = None
    timestamp_bonus_consumed: Nullable[Timestamp] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignDropWin:
    """``thrilldrops/CampaignDropWin``: a player won a campaign reward."""

    reward_id: str
    reward_valid_from: Timestamp | None = None
    reward_valid_to: Timestamp | None = None
    name: str
    currency: str
    value: Decimal
    image: str | None = None
    animation: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayerRaffleTicketResponse:
    """⚙ ``PlayerRaffleTicketResponse`` (a Message): a player's tickets in a raffle."""

    instance_id: str
    brand_id: str | None = None
    player_id: str
    ext_player_id: str | None = None
    ticket_count: Count
    accumulated_cost: Decimal | None = None
    timestamp_start: Timestamp | None = None
    timestamp_end: Timestamp | None = None


# -- requests --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OptInTarget:
    """What a ``PlayerOptInRequestV2`` is about: an ``instance`` or a ``source``."""

    type: Literal["instance", "source"]
    id: Identifier


@dataclass(frozen=True, slots=True)
class OptInPlayer:
    """The player of a ``PlayerOptInRequestV2`` (``brand_id`` bare)."""

    id: Identifier
    country: CountryCode
    brand_id: Identifier


@dataclass(frozen=True, slots=True)
class PlayerOptInRequestV2:
    """``PlayerOptInRequestV2``: opt-in by instance or by source."""

    target: OptInTarget
    operator_id: Identifier
    player: OptInPlayer
    opt_in: bool
    contribution_value: Contribution | None = None
    opt_linked: bool | None = None


@dataclass(frozen=True, slots=True)
class PlayerRaffleTicketsRequest:
    """``PlayerRaffleTicketsRequest``: ask for a player's tickets in a raffle."""

    player_id: Identifier
    instance_id: Identifier
    brand_id: Identifier


# -- every documented event and request, and loaders that know them --------------------------

EVENTS: Mapping[tuple[str, str], type] = {
    **models.EVENT_MODELS,
    ("thrillpots", "JackpotUpdate"): JackpotUpdate,
    ("thrillpots", "WinEvent"): WinEvent,
    ("thrillpots", "RaffleWinEvent"): RaffleWinEvent,
    **{
        ("thrillgate", f"PlayerBonus{change}"): PlayerBonus
        for change in ("Added", "Updated", "Consumed", "Expired", "Removed")
    },
    ("thrilldrops", "CampaignDropWin"): CampaignDropWin,
    # Answers to requests are recognised by name, whatever source the server writes.
    ("*", "PlayerRaffleTicketResponse"): PlayerRaffleTicketResponse,
}
REQUESTS: Mapping[str, type] = {
    **models.CLIENT_REQUESTS,
    "PlayerOptInRequestV2": PlayerOptInRequestV2,
    "PlayerRaffleTicketsRequest": PlayerRaffleTicketsRequest,
}
_REQUEST_NAME = {model: name for name, model in REQUESTS.items()}


def load_envelope(obj: Any) -> models.Envelope:
    """:func:`flask_thrillconnect.models.load_envelope` knowing every documented event."""
    return models.load_envelope(obj, EVENTS)


def load_client_request(obj: Any) -> tuple[str, Any]:
    """:func:`flask_thrillconnect.models.load_client_request` knowing every request."""
    return models.load_client_request(obj, REQUESTS)


def dump_envelope(envelope: models.Envelope) -> dict[str, Any]:
    """The wire form of an envelope (its ``data`` dumped through the event's schema)."""
    dumped: dict[str, Any] = schema_for(models.Envelope).dump(envelope)
    return dumped


def dump_client_request(request: Any) -> dict[str, Any]:
    """The wire object of a request: ``{"SubscribeRequest": {...}}``."""
    return {_REQUEST_NAME[type(request)]: schema_for(type(request)).dump(request)}


def client_request_json(request: Any) -> str:
    """The JSON text of :func:`dump_client_request`."""
    return to_json(dump_client_request(request))


__all__ = [
    "EVENTS",
    "REQUESTS",
    "BonusAvailability",
    "CampaignDropWin",
    "CommunityWinner",
    "CurrencyMultipliers",
    "JackpotUpdate",
    "JackpotUpdatePot",
    "OptInPlayer",
    "OptInTarget",
    "PlayerBonus",
    "PlayerOptInRequestV2",
    "PlayerRaffleTicketResponse",
    "PlayerRaffleTicketsRequest",
    "RaffleWinEvent",
    "WinEvent",
    "client_request_json",
    "dump_client_request",
    "dump_envelope",
    "load_client_request",
    "load_envelope",
]
