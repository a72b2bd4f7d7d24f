"""The WebSocket side: envelopes, the events the package reads, and the requests it relays.

* :func:`load_envelope` loads a message from ThrillConnect, with the ``data`` of the events
  named in its ``events`` table (by default those the package acts on: ``OptInEvent``, and
  the ``Error`` answers); other events keep their ``data`` as a plain dict.
* :func:`load_client_request` validates a request a browser sends on the relay.
* :func:`subscribe_request_json` and :func:`player_opt_in_request_json` build the requests the
  portal sends upstream, from the same models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

from marshmallow import ValidationError, fields, validate

from .. import validation
from ..errors import InvalidIdentifier, InvalidRequest, UpstreamUnavailable
from ..limits import MAX_BROWSER_MESSAGE_BYTES, MAX_SUBSCRIPTIONS, MAX_UPSTREAM_MESSAGE_BYTES
from .base import schema_for, summarize, wire_schema
from .encoding import parse_json, to_json
from .fields import Contribution, Count, CountryCode, Identifier, Nullable, Timestamp

__all__ = [
    "CLIENT_REQUESTS",
    "EVENT_MODELS",
    "EVENT_SOURCES",
    "MSG_TYPES",
    "Envelope",
    "EnvelopeSchema",
    "ErrorData",
    "ErrorDataSchema",
    "EventSubscription",
    "EventSubscriptionSchema",
    "OptInEvent",
    "OptInEventSchema",
    "PlayerOptInRequest",
    "PlayerOptInRequestSchema",
    "SubscribeRequest",
    "SubscribeRequestSchema",
    "load_client_request",
    "load_envelope",
    "player_opt_in_request_json",
    "subscribe_request_json",
]

MsgType = Literal["Event", "Message", "Error"]
EventSource = Literal["thrillpots", "thrillgate", "thrilldrops"]
MSG_TYPES: tuple[str, ...] = get_args(MsgType)
EVENT_SOURCES: tuple[str, ...] = get_args(EventSource)


# -- envelopes and the events the package reads ----------------------------------------------


class EventDataField(fields.Raw):
    """The ``data`` of an envelope; a loaded event dumps through its own schema."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return schema_for(type(value)).dump(value)
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """A message from the ThrillConnect WebSocket.

    ``data`` is the loaded dataclass of a known event (e.g. :class:`OptInEvent`), a plain
    dict for other events, or :class:`ErrorData` for ``Error``. ``seq`` is the relay's
    per-connection sequence number (absent upstream).
    """

    msg_type: MsgType
    source: str
    msg_name: str
    operator_id: str | None = None
    brand_id: str | None = None
    player_id: Nullable[str] = None
    data: Annotated[Any, EventDataField]
    timestamp: Timestamp | None = None
    seq: Count | None = None


@dataclass(frozen=True, slots=True)
class ErrorData:
    """⚙ The ``data`` of an ``Error`` envelope: ``{"code", "message"}``."""

    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OptInEvent:
    """``thrillpots/OptInEvent``: a player's opt-in changed (sent to that player)."""

    instance_id: str
    player_id: str
    ext_player_id: str | None = None
    player_brand_id: str | None = None
    preferred_contribution_value: Decimal | None = None
    contribution_count: Count
    contribution_value: Decimal
    opted_in: bool
    last_updated: Timestamp | None = None


#: The events whose ``data`` :func:`load_envelope` loads by default: ``(source, msg_name)``
#: → model; a source of ``"*"`` matches any (answers to requests, whatever source they name).
EVENT_MODELS: Mapping[tuple[str, str], type] = {("thrillpots", "OptInEvent"): OptInEvent}


def load_envelope(
    obj: str | bytes | bytearray | Mapping[str, Any],
    events: Mapping[tuple[str, str], type] = EVENT_MODELS,
) -> Envelope:
    """Load a WebSocket message from ThrillConnect, including the ``data`` of known events.

    :param obj: the message text/bytes, or the already parsed JSON object.
    :param events: the events whose ``data`` loads into a model (see :data:`EVENT_MODELS`);
        ``Error`` envelopes always carry :class:`ErrorData`, whatever their ``msg_name``
        (it names the request that failed).
    :raises UpstreamUnavailable: when the message is not JSON or does not load.
    """
    try:
        payload = obj if isinstance(obj, Mapping) else parse_json(obj, MAX_UPSTREAM_MESSAGE_BYTES)
    except ValueError as error:
        raise UpstreamUnavailable("invalid WebSocket message: not a JSON object") from error
    if not isinstance(payload, Mapping):
        raise UpstreamUnavailable("invalid WebSocket message: not a JSON object")
    try:
        envelope: Envelope = schema_for(Envelope).load(payload)
        if envelope.msg_type == "Error":
            model: type | None = ErrorData
        else:
            model = events.get((envelope.source, envelope.msg_name)) or events.get(
                ("*", envelope.msg_name)
            )
        if model is not None:
            try:
                data = schema_for(model).load(envelope.data)
            except ValidationError as error:
                raise ValidationError({"data": error.messages}) from error
            envelope = dataclasses.replace(envelope, data=data)
    except ValidationError as error:
        raise UpstreamUnavailable(
            f"invalid WebSocket message: {summarize(error.messages)}"
        ) from error
    return envelope


# -- requests a browser sends on the relay, and the portal upstream ---------------------------


def _event_type(value: str) -> None:
    if value != "*":
        try:
            validation.identifier(value, "event_type")
        except InvalidIdentifier as error:
            raise ValidationError(error.problem) from error


@dataclass(frozen=True, slots=True)
class EventSubscription:
    """One subscription: a source and an event name or ``*``."""

    source: EventSource
    event_type: Annotated[str, _event_type]


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """``SubscribeRequest``: subscriptions add up; there is no acknowledgement."""

    events: Annotated[tuple[EventSubscription, ...], validate.Length(min=1, max=MAX_SUBSCRIPTIONS)]


@dataclass(frozen=True, slots=True)
class PlayerOptInRequest:
    """``PlayerOptInRequest``: opt a player in or out of an instance (``brand_id`` joined)."""

    instance_id: Identifier
    player_id: Identifier
    brand_id: Identifier
    player_country: CountryCode
    opt_in: bool
    contribution_value: Contribution | None = None


#: The requests :func:`load_client_request` takes by default: those the relay acts on.
CLIENT_REQUESTS: Mapping[str, type] = {
    "SubscribeRequest": SubscribeRequest,
    "PlayerOptInRequest": PlayerOptInRequest,
}


def load_client_request(
    obj: str | bytes | bytearray | Mapping[str, Any],
    requests: Mapping[str, type] = CLIENT_REQUESTS,
) -> tuple[str, Any]:
    """Validate a request a browser sends on the WebSocket.

    The message must be a JSON object with exactly one key naming a known request; its values
    are bounded and its identifiers validated.

    :param obj: the message text/bytes, or the parsed object.
    :param requests: the request names taken, and their models (see :data:`CLIENT_REQUESTS`).
    :returns: ``(name, request)``, e.g. ``("SubscribeRequest", SubscribeRequest(...))``.
    :raises InvalidRequest: saying what is wrong (never echoing the values).
    """
    try:
        payload = obj if isinstance(obj, Mapping) else parse_json(obj, MAX_BROWSER_MESSAGE_BYTES)
    except ValueError as error:
        raise InvalidRequest("the message is not valid JSON or too large") from error
    if not isinstance(payload, Mapping) or len(payload) != 1:
        raise InvalidRequest("the message must be a JSON object with exactly one request key")
    ((name, body),) = payload.items()
    model = requests.get(name)
    if model is None:
        raise InvalidRequest(f"unknown request; expected one of: {', '.join(requests)}")
    if not isinstance(body, Mapping):
        raise InvalidRequest(f"{name} must be a JSON object", field=name)
    try:
        return name, schema_for(model).load(body)
    except ValidationError as error:
        raise InvalidRequest(f"invalid {name}: {summarize(error.messages)}", field=name) from error


def subscribe_request_json(events: Iterable[Mapping[str, str]]) -> str:
    """The text of a ``SubscribeRequest`` for ``events``, each ``{"source", "event_type"}``.

    :raises InvalidRequest: when an event is not one a browser could subscribe to either.
    """
    name, request = load_client_request({"SubscribeRequest": {"events": list(events)}})
    return to_json({name: schema_for(SubscribeRequest).dump(request)})


def player_opt_in_request_json(
    *,
    instance_id: str,
    player_id: str,
    brand_id: str,
    player_country: str | None,
    opt_in: bool,
    contribution_value: Decimal | None = None,
) -> str:
    """The text of a ``PlayerOptInRequest``; no ``contribution_value`` means the default.

    Every value must come from the server side (the logged-in player, the configured owner
    id) or have been validated already: nothing is checked here.
    """
    request = {
        "instance_id": instance_id,
        "player_id": player_id,
        "brand_id": brand_id,
        "player_country": player_country,
        "opt_in": opt_in,
        "contribution_value": contribution_value,
    }
    return to_json({"PlayerOptInRequest": schema_for(PlayerOptInRequest).dump(request)})


EnvelopeSchema = wire_schema(Envelope)
ErrorDataSchema = wire_schema(ErrorData)
OptInEventSchema = wire_schema(OptInEvent)
EventSubscriptionSchema = wire_schema(EventSubscription)
SubscribeRequestSchema = wire_schema(SubscribeRequest)
PlayerOptInRequestSchema = wire_schema(PlayerOptInRequest)
