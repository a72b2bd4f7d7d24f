"""Client → simulator WebSocket requests: ``SubscribeRequest``, the two opt-in requests and
``PlayerRaffleTicketsRequest``.

Each request is checked, then handed to the world through the :class:`~.runtime.Platform`.
Events it causes (``OptInEvent``) are routed like any event: a player sees them only when
subscribed (or ``*``). Answers (``PlayerRaffleTicketResponse``) and ``Error`` envelopes go to
the asking connection, subscribed or not; an error never closes the connection.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from . import wire
from .connections import MAX_SUBSCRIPTIONS, SimConnection
from .domain import OPERATOR_ID, Event, WalletPlayer, bare_brand_id
from .errors import FIELD_LIMIT, InvalidInput, Rejected, SimError, text_field
from .runtime import Platform


def handle_client_message(
    platform: Platform, connection: SimConnection, message: str | bytes
) -> None:
    """Act on one client message; a failure is answered with an ``Error`` envelope and the
    connection stays open."""
    name = "InvalidMessage"
    try:
        try:
            request_object = json.loads(message)
        except ValueError as e:
            raise InvalidInput("malformed_request", "the message is not JSON") from e
        if not isinstance(request_object, dict) or len(request_object) != 1:
            raise InvalidInput("malformed_request", "a request is an object with one key")
        ((name, body),) = request_object.items()
        handler = _REQUESTS.get(name)
        if handler is None:
            raise InvalidInput("unknown_request", f"unknown request {name[:FIELD_LIMIT]!r}")
        if not isinstance(body, dict):
            raise InvalidInput("invalid_request", f"{name} must hold an object")
        handler(platform, connection, body)
    except SimError as e:
        error = Event(
            "thrillconnect" if name == "SubscribeRequest" else "thrillpots",
            name[:FIELD_LIMIT],
            connection.brand_id,
            connection.player.id if connection.player else None,
            wire.error_data(e.code, e.message),
            _now_ms(),
            msg_type="Error",
        )
        connection.offer(wire.serialize(error))


def _subscribe(platform: Platform, connection: SimConnection, body: dict[str, Any]) -> None:
    events = body.get("events")
    if not isinstance(events, list) or not 0 < len(events) <= MAX_SUBSCRIPTIONS:
        raise InvalidInput("invalid_request", f"events must be a list of 1 to {MAX_SUBSCRIPTIONS}")
    pairs = []
    for entry in events:
        if not isinstance(entry, dict):
            raise InvalidInput("invalid_request", "each subscription must be an object")
        pairs.append((_text(entry, "source"), _text(entry, "event_type")))
    if not connection.subscribe(pairs):
        raise Rejected("too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS} subscriptions")


def _opt_in_v1(platform: Platform, connection: SimConnection, body: dict[str, Any]) -> None:
    player = _player_of(connection, _text(body, "player_id"), _text(body, "brand_id"))
    platform.opt_in(
        player,
        opt_in=_opt_in_flag(body),
        instance_id=_text(body, "instance_id"),
        contribution_value=body.get("contribution_value"),
    )


def _opt_in_v2(platform: Platform, connection: SimConnection, body: dict[str, Any]) -> None:
    target, who = _object(body, "target"), _object(body, "player")
    if _text(body, "operator_id") != OPERATOR_ID:
        raise Rejected("player_mismatch", "the request is for another operator")
    player = _player_of(connection, _text(who, "id"), _text(who, "brand_id"))
    kind, target_id = _text(target, "type"), _text(target, "id")
    if kind not in ("instance", "source"):
        raise InvalidInput("invalid_request", 'target.type must be "instance" or "source"')
    if "opt_linked" in body and not isinstance(body["opt_linked"], bool):
        raise InvalidInput("invalid_request", "opt_linked must be true or false")
    platform.opt_in(
        player,
        opt_in=_opt_in_flag(body),
        contribution_value=body.get("contribution_value"),
        **{f"{kind}_id": target_id},
    )


def _raffle_tickets(platform: Platform, connection: SimConnection, body: dict[str, Any]) -> None:
    player = _player_of(connection, _text(body, "player_id"), _text(body, "brand_id"))
    data = platform.world.raffle_tickets(player, _text(body, "instance_id"))
    reply = Event(
        "thrillpots",
        "PlayerRaffleTicketResponse",
        player.brand_id,
        player.id,
        data,
        _now_ms(),
        msg_type="Message",
    )
    connection.offer(wire.serialize(reply))


_REQUESTS: dict[str, Callable[[Platform, SimConnection, dict[str, Any]], None]] = {
    "SubscribeRequest": _subscribe,
    "PlayerOptInRequest": _opt_in_v1,
    "PlayerOptInRequestV2": _opt_in_v2,
    "PlayerRaffleTicketsRequest": _raffle_tickets,
}


def _text(body: dict[str, Any], key: str) -> str:
    return text_field(body, key, code="invalid_request")


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise InvalidInput("invalid_request", f"{key} must be an object")
    return value


def _opt_in_flag(body: dict[str, Any]) -> bool:
    flag = body.get("opt_in")
    if not isinstance(flag, bool):
        raise InvalidInput("invalid_request", "opt_in must be true or false")
    return flag


def _player_of(connection: SimConnection, player_id: str | None, brand: str | None) -> WalletPlayer:
    if connection.player is None:
        raise Rejected("player_connection_required", "only a player connection may ask this")
    if player_id != connection.player.id or (
        brand is not None and bare_brand_id(brand) != connection.brand_id
    ):
        raise Rejected("player_mismatch", "the request is not for this connection's player")
    return connection.player


def _now_ms() -> int:
    return int(time.time() * 1000)
