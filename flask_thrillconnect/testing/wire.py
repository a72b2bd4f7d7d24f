"""The upstream JSON shapes the simulator answers with: REST bodies, event data and envelopes.

These dicts are a deliberate second copy of the wire shapes of ``THRILLCONNECT_API.md``, written
by hand from the documentation and never built from the portal's own models
(:mod:`flask_thrillconnect.models`). The simulator plays the upstream: if it reused our models,
a bug in them would be mirrored here and every test would pass over it.

Every dict the simulator puts on the wire is built in this module, from domain objects and
under the world's lock (the callers hold it). Conventions (⚙) applied here:

- ``brand_id`` inside event data (``WinEvent``, ``RaffleWinEvent``, ``currency_multipliers``)
  uses the joined owner form, like ``player_brand_id``; envelopes use the bare brand.
- ``optin_status`` of a player who never chose: not opted in, zero counts, the default
  contribution, ``last_updated`` 0. Contributions are in the jackpot's currency.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from .domain import (
    BASE_CURRENCY,
    EXCHANGE_RATES,
    OPERATOR_ID,
    PLATFORM_VERSION,
    Event,
    Instance,
    OptInRecord,
    Pot,
    Source,
    WalletPlayer,
)


def money(value: Decimal) -> float:
    """Money as the JSON number most of the API uses (the ticker uses decimal strings)."""
    return float(value)


# -- REST ----------------------------------------------------------------------------------------
def error_body(code: str, message: str) -> dict[str, str]:
    """The body of every REST error."""
    return {"error": code, "message": message}


def health() -> dict[str, Any]:
    """``GET /health``."""
    return {"version": PLATFORM_VERSION}


def currencies(now: int) -> dict[str, Any]:
    """``GET /v1/currencies``."""
    return {"last_updated": now, "base_currency": BASE_CURRENCY, "multipliers": _multipliers()}


def source(source: Source, owner_id: str) -> dict[str, Any]:
    """One entry of ``GET /v1/thrillpots/sources``: the jackpots ``owner_id`` may see."""
    return {
        "owner_id": owner_id,
        "source_name": source.name,
        "source_id": source.source_id,
        "jackpots": [
            {"priority": priority, "owner_id": owner_id, "instance_id": instance.id}
            for priority, instance in sorted(source.jackpots, key=lambda j: j[0])
            if owner_id in instance.allowed_brands
        ],
    }


def jackpot(instance: Instance, optin_status: dict[str, Any] | None) -> dict[str, Any]:
    """``GET /v1/thrillpots/instances/source/{source_id}/brand/{brand}``."""
    return {
        "id": instance.id,
        "currency": instance.currency,
        "opt_in_required": instance.opt_in_required,
        "contribution_type": {instance.contribution_kind: money(instance.contribution_value)},
        "optin_status": optin_status,
        "pots": [
            {
                "id": pot.id,
                "instance_count": pot.instance_count,
                "is_progressive": pot.is_progressive,
                "current_value": money(pot.current_value),
                "community_split": money(pot.community_split),
            }
            for pot in instance.pots
        ],
        "timestamp_start": instance.timestamp_start,
        "timestamp_end": instance.timestamp_end,
        "status": instance.status,
    }


def optin_status(
    instance: Instance, player_id: str, owner: str, record: OptInRecord
) -> dict[str, Any]:
    """The ``optin_status`` of a jackpot answer."""
    return {
        "doc_version": "V1",
        "instance_id": instance.id,
        "player_id": player_id,
        "ext_player_id": player_id,
        "player_brand_id": owner,
        "preferred_contribution_value": money(record.preferred_value),
        "preferred_contribution_currency": instance.currency,
        "contribution_preferences": {instance.currency: str(record.preferred_value)},
        "contribution_count": record.contribution_count,
        "contribution_value": money(record.contribution_value),
        "pot_contributions": {
            pot.id: {"contribution_count": count, "contribution_value": money(value)}
            for pot in instance.pots
            for count, value in [record.pot_contributions.get(pot.id, (0, Decimal(0)))]
        },
        "opted_in": record.opted_in,
        "last_updated": record.last_updated,
    }


def ticker(instance: Instance) -> dict[str, Any]:
    """``GET /v1/thrillpots/instances/{instance_id}/ticker``: money as decimal strings."""
    return _instance_view(
        instance,
        lambda pot: {
            "id": pot.id,
            "is_progressive": pot.is_progressive,
            "current_value": str(pot.current_value),
            "community_split": str(pot.community_split),
        },
    )


def cors_list(rules: list[dict[str, str]]) -> dict[str, Any]:
    """``GET`` and ``PUT /v1/cors``."""
    return {"cors_origin_list": rules}


def cors_removal(removed: int, remaining: list[dict[str, str]]) -> dict[str, Any]:
    """``DELETE /v1/cors``."""
    return {"removed": removed, "cors_origin_list": remaining}


# -- event data ----------------------------------------------------------------------------------
def jackpot_update(instance: Instance) -> dict[str, Any]:
    """``JackpotUpdate``: the ticker's shape with money as numbers and no community split."""
    return _instance_view(
        instance,
        lambda pot: {
            "id": pot.id,
            "is_progressive": pot.is_progressive,
            "current_value": money(pot.current_value),
        },
    )


def opt_in_event(instance: Instance, player: WalletPlayer, record: OptInRecord) -> dict[str, Any]:
    """``OptInEvent``."""
    return {
        "instance_id": instance.id,
        "player_id": player.id,
        "ext_player_id": player.id,
        "player_brand_id": player.owner_id,
        "preferred_contribution_value": money(record.preferred_value),
        "contribution_count": record.contribution_count,
        "contribution_value": money(record.contribution_value),
        "opted_in": record.opted_in,
        "last_updated": record.last_updated,
    }


def raffle_tickets(instance: Instance, player: WalletPlayer, tickets: int) -> dict[str, Any]:
    """``PlayerRaffleTicketResponse``."""
    return {
        "instance_id": instance.id,
        "brand_id": player.owner_id,
        "player_id": player.id,
        "ext_player_id": player.id,
        "ticket_count": tickets,
        "accumulated_cost": money(tickets * instance.contribution_value),
        "timestamp_start": instance.timestamp_start,
        "timestamp_end": instance.timestamp_end,
    }


def winner(player: WalletPlayer, amount: Decimal) -> dict[str, Any]:
    """One of a ``WinEvent``'s ``community_winners`` or a ``RaffleWinEvent``'s ``winners``;
    ``amount`` in the player's currency."""
    return {
        "player_id": player.id,
        "brand_id": player.owner_id,
        "currency": player.currency,
        "win_amount": money(amount),
    }


def win_event(
    instance: Instance,
    pot: Pot,
    player: WalletPlayer,
    community_winners: list[dict[str, Any]],
    now: int,
) -> dict[str, Any]:
    """``WinEvent``: ``pot`` won at its current value by ``player``."""
    return {
        "brand_id": player.owner_id,
        "player_id": player.id,
        "source_id": instance.allowed_sources[0],
        "instance_id": instance.id,
        "jackpot_name": instance.name,
        "jackpot_currency": instance.currency,
        "timestamp": now,
        "win_pot_id": pot.id,
        "win_amount": money(pot.current_value),
        "currency_multipliers": _currency_multipliers(player.owner_id),
        "win_withheld": False,
        "community_winners": community_winners,
        "games_in_jackpot": list(instance.allowed_sources),
        "seed": money(pot.seed_value),
        "metadata": {"simulated": True},
    }


def community_payout_error(
    instance: Instance, pot: Pot, owner: str, amount: Decimal, now: int
) -> dict[str, Any]:
    """``CommunityPayoutErrorEvent``: a community share nobody could receive."""
    return {
        "instance_id": instance.id,
        "win_pot_id": pot.id,
        "brand_id": owner,
        "currency": instance.currency,
        "amount": money(amount),
        "reason": "no_community_members",
        "timestamp": now,
    }


def raffle_win(
    instance: Instance, owner: str, winners: Sequence[dict[str, Any]], now: int
) -> dict[str, Any]:
    """``RaffleWinEvent``; withheld when nobody won."""
    return {
        "brand_id": owner,
        "instance_id": instance.id,
        "jackpot_name": instance.name,
        "jackpot_currency": instance.currency,
        "currency_multipliers": _currency_multipliers(owner),
        "timestamp": now,
        "winners": list(winners),
        "win_withheld": not winners,
    }


def raffle_payout_error(instance: Instance, owner: str, now: int) -> dict[str, Any]:
    """``RafflePayoutErrorEvent``: a draw without tickets."""
    return {"instance_id": instance.id, "brand_id": owner, "reason": "no_tickets", "timestamp": now}


def error_data(code: str, message: str) -> dict[str, str]:
    """The data of an ``Error`` envelope."""
    return {"code": code, "message": message}


# -- envelopes -----------------------------------------------------------------------------------
def envelope(event: Event) -> dict[str, Any]:
    """The wire envelope of an event, answer or error."""
    return {
        "msg_type": event.msg_type,
        "source": event.source,
        "msg_name": event.msg_name,
        "operator_id": OPERATOR_ID,
        "brand_id": event.brand_id,
        "player_id": event.player_id,
        "data": event.data,
        "timestamp": event.timestamp,
    }


def serialize(event: Event) -> str:
    """The envelope as compact JSON text, ready to send."""
    return json.dumps(envelope(event), separators=(",", ":"), ensure_ascii=False)


# -- shared parts --------------------------------------------------------------------------------
def _multipliers() -> dict[str, float]:
    return {ccy: money(rate) for ccy, rate in EXCHANGE_RATES.items()}


def _currency_multipliers(owner: str) -> dict[str, Any]:
    return {"brand_id": owner, "base_currency": BASE_CURRENCY, "multipliers": _multipliers()}


def _instance_view(instance: Instance, pot_view: Callable[[Pot], dict[str, Any]]) -> dict[str, Any]:
    # The ticker and JackpotUpdate share this frame and differ in their pots.
    return {
        "id": instance.id,
        "jackpot_type": instance.jackpot_type,
        "currency": instance.currency,
        "pots": [pot_view(pot) for pot in instance.pots],
        "allowed_brands": list(instance.allowed_brands),
        "allowed_sources": list(instance.allowed_sources),
        "status": instance.status,
        "timestamp_start": instance.timestamp_start,
        "timestamp_end": instance.timestamp_end,
        "last_updated": instance.last_updated,
    }
