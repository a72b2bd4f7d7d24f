"""Marshmallow schemas for every ThrillConnect shape, loading into frozen dataclasses.

Three groups live here:

* REST answers (:class:`Jackpot`, :class:`Source`, :class:`Ticker`, :class:`Currencies`,
  CORS rules, :class:`Health`);
* WebSocket envelopes and the ``data`` of each known event (:func:`load_envelope`);
* the requests a client sends on the WebSocket (:func:`load_client_request`,
  :func:`dump_client_request`).

Every schema excludes unknown fields, so additive upstream changes never break a portal. Money
loads as :class:`~decimal.Decimal`: from JSON numbers through their shortest ``repr`` (never
binary float noise) and from the ticker's decimal strings. Dumping reproduces the upstream
wire shape (ticker money as decimal strings, every other amount as a JSON number).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, is_dataclass
from decimal import Decimal
from typing import Any, ClassVar, Protocol, TypeVar

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_dump,
    post_load,
    validate,
    validates_schema,
)

from . import validation
from .errors import InvalidIdentifier, InvalidRequest, UnknownCurrency, UpstreamUnavailable

__all__ = [
    "CLIENT_REQUEST_NAMES",
    "CONTRIBUTION_KINDS",
    "JACKPOT_STATUSES",
    "JACKPOT_TYPES",
    "MATCH_MODES",
    "MSG_TYPES",
    "BonusAvailability",
    "CampaignDropWin",
    "CommunityWinner",
    "ContributionType",
    "CorsList",
    "CorsOrigin",
    "CorsRemoval",
    "Currencies",
    "CurrencyMultipliers",
    "Envelope",
    "ErrorData",
    "EventSubscription",
    "Health",
    "Jackpot",
    "JackpotPot",
    "JackpotUpdate",
    "JackpotUpdatePot",
    "OptInEvent",
    "OptInPlayer",
    "OptInStatus",
    "OptInTarget",
    "PlayerBonus",
    "PlayerOptInRequest",
    "PlayerOptInRequestV2",
    "PlayerRaffleTicketResponse",
    "PlayerRaffleTicketsRequest",
    "PotContribution",
    "RaffleWinEvent",
    "Source",
    "SourceJackpot",
    "SubscribeRequest",
    "Ticker",
    "TickerPot",
    "WinEvent",
    "client_request_json",
    "contribution_range",
    "dump_client_request",
    "dump_envelope",
    "event_schema",
    "load_client_request",
    "load_envelope",
    "schema_for",
    "to_json",
]

JACKPOT_STATUSES = ("Pending", "Active", "Paused", "Terminated")
JACKPOT_TYPES = ("Jackpot", "Raffle")
CONTRIBUTION_KINDS = ("Fixed", "Percentage")
MATCH_MODES = ("Exact", "Wildcard", "Regex")
MSG_TYPES = ("Event", "Message", "Error")
EVENT_SOURCES = ("thrillpots", "thrillgate", "thrilldrops")
BONUS_STATES = ("Available", "Consumed", "Expired")

#: The largest contribution a browser may ask for; far above any real jackpot's range, it only
#: keeps absurd numbers out of upstream messages.
MAX_CONTRIBUTION = Decimal(1_000_000)
MAX_SUBSCRIPTIONS = 32
MAX_CLIENT_REQUEST_BYTES = 16 * 1024
MAX_ENVELOPE_BYTES = 4 * 1024 * 1024
MAX_CORS_PATTERN_LENGTH = 512


# --------------------------------------------------------------------------------------------
# Fields
# --------------------------------------------------------------------------------------------


class Money(fields.Decimal):
    """A JSON number (or decimal string) loaded as an exact :class:`~decimal.Decimal`.

    Dumps back to a JSON number: an ``int`` for whole values that came without a fraction,
    else the ``float`` whose shortest repr is the decimal (``Decimal("10.53")`` → ``10.53``).
    """

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        number = self._format_num(value)
        if number.as_tuple().exponent >= 0:  # type: ignore[operator]
            return int(number)
        return float(number)


class DecimalString(fields.Decimal):
    """Money the upstream writes as a decimal string (the ticker): ``"10.53"``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(as_string=True, **kwargs)


class StrictBoolean(fields.Boolean):
    """A boolean that accepts only JSON ``true``/``false`` (not ``1``, ``"yes"``…)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class Timestamp(fields.Integer):
    """Epoch milliseconds, an integer."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)


class Count(fields.Integer):
    """A non-negative integer count."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, validate=validate.Range(min=0), **kwargs)


class Sequence(fields.List):
    """A JSON array loaded as a tuple (the dataclasses are immutable)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return tuple(super()._deserialize(value, attr, data, **kwargs))


_F = TypeVar("_F", bound=fields.Field)


class _Checked(fields.String):
    """A string checked by one of :mod:`flask_thrillconnect.validation`'s functions."""

    def __init__(self, check: Callable[[Any, str], Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._check = check

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            self._check(text, attr or "value")
        except InvalidIdentifier as error:
            raise ValidationError(error.problem) from error
        return text


def _identifier(**kwargs: Any) -> _Checked:
    return _Checked(validation.identifier, **kwargs)


def _country(**kwargs: Any) -> _Checked:
    return _Checked(validation.country_code, **kwargs)


def _optional(field_class: type[_F], *args: Any, **kwargs: Any) -> _F:
    """A nullable field: absent → ``None``, and left out of dumps when ``None``."""
    metadata = {**kwargs.pop("metadata", {}), "omit_if_none": True}
    return field_class(*args, allow_none=True, load_default=None, metadata=metadata, **kwargs)


def _nullable(field_class: type[_F], *args: Any, **kwargs: Any) -> _F:
    """A nullable field that stays on the wire: absent → ``None``, dumped as ``null``."""
    return field_class(*args, allow_none=True, load_default=None, **kwargs)


_MONEY = Money()


def _amount(value: Any) -> Decimal:
    return _MONEY.deserialize(value)


# --------------------------------------------------------------------------------------------
# Base schema
# --------------------------------------------------------------------------------------------


class BaseSchema(Schema):
    """Excludes unknown fields; builds ``__model__`` on load; drops ``omit_if_none`` Nones."""

    __model__: ClassVar[type | None] = None

    class Meta:
        unknown = EXCLUDE

    @post_load
    def _make_model(self, data: dict[str, Any], **kwargs: Any) -> Any:
        model = type(self).__model__
        return data if model is None else model(**data)

    @post_dump
    def _omit_absent(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        for name, field in self.dump_fields.items():
            key = field.data_key or name
            if field.metadata.get("omit_if_none") and data.get(key) is None:
                data.pop(key, None)
        return data


_SCHEMA_FOR_MODEL: dict[type, BaseSchema] = {}
_S = TypeVar("_S", bound=type[BaseSchema])


def _registered(schema_class: _S) -> _S:
    """Remember one instance of ``schema_class`` as the schema of its model."""
    model = schema_class.__model__
    if model is not None:
        _SCHEMA_FOR_MODEL[model] = schema_class()
    return schema_class


def schema_for(model: type) -> BaseSchema:
    """The (shared, stateless) schema instance that loads into and dumps ``model``."""
    return _SCHEMA_FOR_MODEL[model]


def _dump(value: Any) -> Any:
    return schema_for(type(value)).dump(value)


# --------------------------------------------------------------------------------------------
# REST: jackpot for a source
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContributionType:
    """How a player contributes: ``Fixed`` amount per bet or ``Percentage`` of the bet.

    Externally tagged on the wire: ``{"Fixed": 0.1}``.
    """

    kind: str
    value: Decimal


def contribution_range(contribution_type: ContributionType) -> tuple[Decimal, Decimal]:
    """⚙ The contribution a player may choose, as an inclusive ``(min, max)``.

    A simulator convention (the vendor is silent): ``Fixed v`` allows ``[v, 10·v]``;
    ``Percentage`` allows ``[0.01, 0.10]``. This is the one place of that rule.
    """
    if contribution_type.kind == "Fixed":
        return contribution_type.value, contribution_type.value * 10
    return Decimal("0.01"), Decimal("0.10")


class ContributionTypeField(fields.Field):
    """``{"Fixed": 0.1}`` ⇄ :class:`ContributionType`."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> ContributionType:
        if not isinstance(value, Mapping) or len(value) != 1:
            raise ValidationError("Must be an object with exactly one key: Fixed or Percentage.")
        ((kind, amount),) = value.items()
        if kind not in CONTRIBUTION_KINDS:
            raise ValidationError("Must be tagged Fixed or Percentage.")
        number = _amount(amount)
        if number < 0:
            raise ValidationError("Must not be negative.")
        return ContributionType(kind=kind, value=number)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return {value.kind: _MONEY._serialize(value.value, attr, obj)}


@dataclass(frozen=True, slots=True)
class PotContribution:
    """A player's contributions to one pot."""

    contribution_count: int
    contribution_value: Decimal


@_registered
class PotContributionSchema(BaseSchema):
    """Loads into and dumps :class:`PotContribution`."""

    __model__ = PotContribution
    contribution_count = Count(required=True)
    contribution_value = Money(required=True)


@dataclass(frozen=True, slots=True)
class OptInStatus:
    """A player's opt-in state for a jackpot instance (``optin_status`` of a jackpot)."""

    instance_id: str
    player_id: str
    opted_in: bool
    contribution_count: int
    contribution_value: Decimal
    doc_version: str | None = None
    ext_player_id: str | None = None
    player_brand_id: str | None = None
    preferred_contribution_value: Decimal | None = None
    preferred_contribution_currency: str | None = None
    contribution_preferences: dict[str, str] | None = None
    pot_contributions: dict[str, PotContribution] | None = None
    last_updated: int | None = None


@_registered
class OptInStatusSchema(BaseSchema):
    """Loads into and dumps :class:`OptInStatus`."""

    __model__ = OptInStatus
    doc_version = _optional(fields.String)
    instance_id = fields.String(required=True)
    player_id = fields.String(required=True)
    ext_player_id = _optional(fields.String)
    player_brand_id = _optional(fields.String)
    preferred_contribution_value = _optional(Money)
    preferred_contribution_currency = _optional(fields.String)
    # Strings on the wire ({"EUR": "0.1"}); the seed types them as plain strings, so they
    # are kept as sent rather than parsed.
    contribution_preferences = _optional(fields.Dict, keys=fields.String(), values=fields.String())
    contribution_count = Count(required=True)
    contribution_value = Money(required=True)
    pot_contributions = _optional(
        fields.Dict, keys=fields.String(), values=fields.Nested(PotContributionSchema)
    )
    opted_in = StrictBoolean(required=True)
    last_updated = _optional(Timestamp)


@dataclass(frozen=True, slots=True)
class JackpotPot:
    """One pot of a jackpot (``minor``, ``major``…), money in the jackpot's currency."""

    id: str
    is_progressive: bool
    current_value: Decimal
    community_split: Decimal
    instance_count: int | None = None


@_registered
class JackpotPotSchema(BaseSchema):
    """Loads into and dumps :class:`JackpotPot`."""

    __model__ = JackpotPot
    id = fields.String(required=True)
    instance_count = _optional(Count)
    is_progressive = StrictBoolean(required=True)
    current_value = Money(required=True)
    community_split = Money(required=True, validate=validate.Range(min=0, max=1))


@dataclass(frozen=True, slots=True)
class Jackpot:
    """The jackpot instance ThrillConnect picked for a source, brand and player."""

    id: str
    currency: str
    opt_in_required: bool
    contribution_type: ContributionType
    pots: tuple[JackpotPot, ...]
    timestamp_start: int
    status: str
    optin_status: OptInStatus | None = None
    timestamp_end: int | None = None


@_registered
class JackpotSchema(BaseSchema):
    """Loads into and dumps :class:`Jackpot`."""

    __model__ = Jackpot
    id = fields.String(required=True)
    currency = fields.String(required=True)
    opt_in_required = StrictBoolean(required=True)
    contribution_type = ContributionTypeField(required=True)
    optin_status = _nullable(fields.Nested, OptInStatusSchema)
    pots = Sequence(fields.Nested(JackpotPotSchema), required=True)
    timestamp_start = Timestamp(required=True)
    timestamp_end = _nullable(Timestamp)
    status = fields.String(required=True, validate=validate.OneOf(JACKPOT_STATUSES))


# --------------------------------------------------------------------------------------------
# REST: sources, ticker, currencies, health
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceJackpot:
    """A jackpot instance a source feeds; the lowest ``priority`` number wins."""

    priority: int
    owner_id: str
    instance_id: str


@_registered
class SourceJackpotSchema(BaseSchema):
    """Loads into and dumps :class:`SourceJackpot`."""

    __model__ = SourceJackpot
    priority = fields.Integer(strict=True, required=True)
    owner_id = fields.String(required=True)
    instance_id = fields.String(required=True)


@dataclass(frozen=True, slots=True)
class Source:
    """A point of the player journey that contributes to jackpots (a game, ``sportsbook``…)."""

    owner_id: str
    source_name: str
    source_id: str
    jackpots: tuple[SourceJackpot, ...]


@_registered
class SourceSchema(BaseSchema):
    """Loads into and dumps :class:`Source`."""

    __model__ = Source
    owner_id = fields.String(required=True)
    source_name = fields.String(required=True)
    source_id = fields.String(required=True)
    jackpots = Sequence(fields.Nested(SourceJackpotSchema), required=True)


@dataclass(frozen=True, slots=True)
class TickerPot:
    """A pot as the ticker shows it (money from decimal strings)."""

    id: str
    is_progressive: bool
    current_value: Decimal
    community_split: Decimal


@_registered
class TickerPotSchema(BaseSchema):
    """Loads into and dumps :class:`TickerPot`."""

    __model__ = TickerPot
    id = fields.String(required=True)
    is_progressive = StrictBoolean(required=True)
    current_value = DecimalString(required=True)
    community_split = DecimalString(required=True, validate=validate.Range(min=0, max=1))


@dataclass(frozen=True, slots=True)
class Ticker:
    """The live values of one jackpot instance."""

    id: str
    jackpot_type: str
    currency: str
    pots: tuple[TickerPot, ...]
    allowed_brands: tuple[str, ...]
    allowed_sources: tuple[str, ...]
    status: str
    timestamp_start: int
    last_updated: int
    timestamp_end: int | None = None


@_registered
class TickerSchema(BaseSchema):
    """Loads into and dumps :class:`Ticker`."""

    __model__ = Ticker
    id = fields.String(required=True)
    jackpot_type = fields.String(required=True, validate=validate.OneOf(JACKPOT_TYPES))
    currency = fields.String(required=True)
    pots = Sequence(fields.Nested(TickerPotSchema), required=True)
    allowed_brands = Sequence(fields.String(), required=True)
    allowed_sources = Sequence(fields.String(), required=True)
    status = fields.String(required=True, validate=validate.OneOf(JACKPOT_STATUSES))
    timestamp_start = Timestamp(required=True)
    timestamp_end = _nullable(Timestamp)
    last_updated = Timestamp(required=True)


def _positive_multipliers(value: Mapping[str, Decimal]) -> None:
    if any(multiplier <= 0 for multiplier in value.values()):
        raise ValidationError("Every multiplier must be positive.")


@dataclass(frozen=True, slots=True)
class Currencies:
    """Exchange rates: ``multipliers[ccy]`` units of ``ccy`` per one unit of the base."""

    last_updated: int
    base_currency: str
    multipliers: dict[str, Decimal]

    def convert(self, amount: Decimal | int | str, from_ccy: str, to_ccy: str) -> Decimal:
        """Convert ``amount`` from ``from_ccy`` to ``to_ccy`` (unrounded).

        :raises UnknownCurrency: when either currency has no multiplier.
        """
        rates = self.multipliers
        for code in (from_ccy, to_ccy):
            if code not in rates:
                raise UnknownCurrency("no exchange rate for that currency")
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
        if from_ccy == to_ccy:
            return value
        return value / rates[from_ccy] * rates[to_ccy]


@_registered
class CurrenciesSchema(BaseSchema):
    """Loads into and dumps :class:`Currencies`."""

    __model__ = Currencies
    last_updated = Timestamp(required=True)
    base_currency = fields.String(required=True)
    multipliers = fields.Dict(
        keys=fields.String(), values=Money(), required=True, validate=_positive_multipliers
    )


@dataclass(frozen=True, slots=True)
class Health:
    """``GET /health`` of ThrillConnect."""

    version: str


@_registered
class HealthSchema(BaseSchema):
    """Loads into and dumps :class:`Health`."""

    __model__ = Health
    version = fields.String(required=True)


# --------------------------------------------------------------------------------------------
# REST: CORS origin rules
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CorsOrigin:
    """A browser origin rule: ``pattern`` matched ``Exact``, by ``Wildcard`` or ``Regex``."""

    pattern: str
    match_mode: str


def _cors_pattern(value: str) -> None:
    if not value or len(value) > MAX_CORS_PATTERN_LENGTH:
        raise ValidationError(f"Must be 1 to {MAX_CORS_PATTERN_LENGTH} characters.")
    if not value.isprintable() or any(ch.isspace() for ch in value):
        raise ValidationError("Must not contain whitespace or control characters.")


@_registered
class CorsOriginSchema(BaseSchema):
    """Loads into and dumps :class:`CorsOrigin`."""

    __model__ = CorsOrigin
    pattern = fields.String(required=True, validate=_cors_pattern)
    match_mode = fields.String(required=True, validate=validate.OneOf(MATCH_MODES))

    @validates_schema
    def _regex_compiles(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("match_mode") == "Regex":
            try:
                re.compile(data["pattern"])
            except re.error as error:
                raise ValidationError("Not a valid regular expression.", "pattern") from error


@dataclass(frozen=True, slots=True)
class CorsList:
    """The CORS origin rules (``GET``/``PUT /v1/cors`` answers and the ``PUT`` body)."""

    rules: tuple[CorsOrigin, ...]


class _LenientCorsOriginSchema(CorsOriginSchema):
    # Rules stored upstream may use a regex dialect Python does not compile, or a match mode
    # added after this release; listing them must still work, so only requests are strict.
    match_mode = fields.String(required=True, validate=validate.Length(min=1))

    @validates_schema
    def _regex_compiles(self, data: dict[str, Any], **kwargs: Any) -> None:
        return None


@_registered
class CorsListSchema(BaseSchema):
    """Loads into and dumps :class:`CorsList`."""

    __model__ = CorsList
    rules = Sequence(
        fields.Nested(_LenientCorsOriginSchema),
        data_key="cors_origin_list",
        attribute="rules",
        required=True,
    )


class CorsUpsertSchema(BaseSchema):
    """The ``PUT /v1/cors`` body; every rule fully validated (regexes must compile)."""

    __model__ = CorsList
    rules = Sequence(
        fields.Nested(CorsOriginSchema),
        data_key="cors_origin_list",
        attribute="rules",
        required=True,
        validate=validate.Length(max=1000),
    )


@dataclass(frozen=True, slots=True)
class CorsRemoval:
    """The ``DELETE /v1/cors`` answer: how many rules went and what remains."""

    removed: int
    rules: tuple[CorsOrigin, ...]


@_registered
class CorsRemovalSchema(BaseSchema):
    """Loads into and dumps :class:`CorsRemoval`."""

    __model__ = CorsRemoval
    removed = Count(required=True)
    rules = Sequence(
        fields.Nested(_LenientCorsOriginSchema),
        data_key="cors_origin_list",
        attribute="rules",
        required=True,
    )


class CorsRemoveRequestSchema(BaseSchema):
    """The ``DELETE /v1/cors`` body: ``{"cors_origin_list": ["pattern", …]}``."""

    patterns = Sequence(
        fields.String(validate=_cors_pattern),
        data_key="cors_origin_list",
        attribute="patterns",
        required=True,
        validate=validate.Length(max=1000),
    )


# --------------------------------------------------------------------------------------------
# WebSocket event data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JackpotUpdatePot:
    """A pot in a ``JackpotUpdate`` (money as numbers, in the jackpot's currency)."""

    id: str
    is_progressive: bool
    current_value: Decimal
    community_split: Decimal | None = None
    instance_count: int | None = None


@_registered
class JackpotUpdatePotSchema(BaseSchema):
    """Loads into and dumps :class:`JackpotUpdatePot`."""

    __model__ = JackpotUpdatePot
    id = fields.String(required=True)
    is_progressive = StrictBoolean(required=True)
    current_value = Money(required=True)
    community_split = _optional(Money)
    instance_count = _optional(Count)


@dataclass(frozen=True, slots=True)
class JackpotUpdate:
    """``thrillpots/JackpotUpdate``: the live values of an instance, sent every few seconds."""

    id: str
    jackpot_type: str
    currency: str
    pots: tuple[JackpotUpdatePot, ...]
    allowed_brands: tuple[str, ...]
    allowed_sources: tuple[str, ...]
    status: str
    timestamp_start: int
    last_updated: int
    timestamp_end: int | None = None


@_registered
class JackpotUpdateSchema(TickerSchema):
    """Loads into and dumps :class:`JackpotUpdate`: a ticker whose money is numbers."""

    __model__ = JackpotUpdate
    pots = Sequence(fields.Nested(JackpotUpdatePotSchema), required=True)


@dataclass(frozen=True, slots=True)
class CurrencyMultipliers:
    """The exchange rates attached to a win, for showing it in other currencies."""

    base_currency: str
    multipliers: dict[str, Decimal]
    brand_id: str | None = None


@_registered
class CurrencyMultipliersSchema(BaseSchema):
    """Loads into and dumps :class:`CurrencyMultipliers`."""

    __model__ = CurrencyMultipliers
    brand_id = _optional(fields.String)
    base_currency = fields.String(required=True)
    multipliers = fields.Dict(
        keys=fields.String(), values=Money(), required=True, validate=_positive_multipliers
    )


@dataclass(frozen=True, slots=True)
class CommunityWinner:
    """A player paid a share of a win (community winners, raffle winners)."""

    player_id: str
    brand_id: str
    currency: str
    win_amount: Decimal


@_registered
class CommunityWinnerSchema(BaseSchema):
    """Loads into and dumps :class:`CommunityWinner`."""

    __model__ = CommunityWinner
    player_id = fields.String(required=True)
    brand_id = fields.String(required=True)
    currency = fields.String(required=True)
    win_amount = Money(required=True)


@dataclass(frozen=True, slots=True)
class WinEvent:
    """``thrillpots/WinEvent``: a pot was won (broadcast to every player of the brand)."""

    brand_id: str
    player_id: str
    instance_id: str
    jackpot_currency: str
    timestamp: int
    win_pot_id: str
    win_amount: Decimal
    source_id: str | None = None
    jackpot_name: str | None = None
    currency_multipliers: CurrencyMultipliers | None = None
    win_withheld: bool | None = None
    community_winners: tuple[CommunityWinner, ...] = ()
    games_in_jackpot: tuple[str, ...] | None = None
    seed: Decimal | None = None
    metadata: dict[str, Any] | None = None


@_registered
class WinEventSchema(BaseSchema):
    """Loads into and dumps :class:`WinEvent`."""

    __model__ = WinEvent
    brand_id = fields.String(required=True)
    player_id = fields.String(required=True)
    source_id = _optional(fields.String)
    instance_id = fields.String(required=True)
    jackpot_name = _optional(fields.String)
    jackpot_currency = fields.String(required=True)
    timestamp = Timestamp(required=True)
    win_pot_id = fields.String(required=True)
    win_amount = Money(required=True)
    currency_multipliers = _optional(fields.Nested, CurrencyMultipliersSchema)
    # ⚙ The vendor names these without types: a flag, source ids, the reseed value and an
    # open object, as the simulator sends them.
    win_withheld = _optional(StrictBoolean)
    community_winners = Sequence(fields.Nested(CommunityWinnerSchema), load_default=())
    games_in_jackpot = _optional(Sequence, fields.String())
    seed = _optional(Money)
    metadata = _optional(fields.Dict, keys=fields.String())


@dataclass(frozen=True, slots=True)
class RaffleWinEvent:
    """``thrillpots/RaffleWinEvent``: a raffle was drawn."""

    brand_id: str
    instance_id: str
    jackpot_currency: str
    timestamp: int
    winners: tuple[CommunityWinner, ...]
    jackpot_name: str | None = None
    currency_multipliers: CurrencyMultipliers | None = None
    win_withheld: bool | None = None


@_registered
class RaffleWinEventSchema(BaseSchema):
    """Loads into and dumps :class:`RaffleWinEvent`."""

    __model__ = RaffleWinEvent
    brand_id = fields.String(required=True)
    instance_id = fields.String(required=True)
    jackpot_name = _optional(fields.String)
    jackpot_currency = fields.String(required=True)
    currency_multipliers = _optional(fields.Nested, CurrencyMultipliersSchema)
    timestamp = Timestamp(required=True)
    winners = Sequence(fields.Nested(CommunityWinnerSchema), required=True)
    win_withheld = _optional(StrictBoolean)


@dataclass(frozen=True, slots=True)
class OptInEvent:
    """``thrillpots/OptInEvent``: a player's opt-in changed (sent to that player)."""

    instance_id: str
    player_id: str
    opted_in: bool
    contribution_count: int
    contribution_value: Decimal
    ext_player_id: str | None = None
    player_brand_id: str | None = None
    preferred_contribution_value: Decimal | None = None
    last_updated: int | None = None


@_registered
class OptInEventSchema(BaseSchema):
    """Loads into and dumps :class:`OptInEvent`."""

    __model__ = OptInEvent
    instance_id = fields.String(required=True)
    player_id = fields.String(required=True)
    ext_player_id = _optional(fields.String)
    player_brand_id = _optional(fields.String)
    preferred_contribution_value = _optional(Money)
    contribution_count = Count(required=True)
    contribution_value = Money(required=True)
    opted_in = StrictBoolean(required=True)
    last_updated = _optional(Timestamp)


@dataclass(frozen=True, slots=True)
class BonusAvailability:
    """Where a bonus may be used: a game provider and some of its games."""

    provider_id: str
    game_ids: tuple[str, ...] = ()


@_registered
class BonusAvailabilitySchema(BaseSchema):
    """Loads into and dumps :class:`BonusAvailability`."""

    __model__ = BonusAvailability
    provider_id = fields.String(required=True)
    game_ids = Sequence(fields.String(), load_default=())


@dataclass(frozen=True, slots=True)
class PlayerBonus:
    """``thrillgate/PlayerBonus*`` events: a player's free-bet bonus and its state."""

    id: str
    state: str
    promo_id: str | None = None
    bonus_instance_id: str | None = None
    available_for: tuple[BonusAvailability, ...] = ()
    bonus_data: Any = None
    timestamp_bonus_awarded: int | None = None
    timestamp_bonus_expires: int | None = None
    timestamp_bonus_consumed: int | None = None


@_registered
class PlayerBonusSchema(BaseSchema):
    """Loads into and dumps :class:`PlayerBonus`."""

    __model__ = PlayerBonus
    id = fields.String(required=True)
    promo_id = _optional(fields.String)
    bonus_instance_id = _optional(fields.String)
    available_for = Sequence(fields.Nested(BonusAvailabilitySchema), load_default=())
    # {"Freespins": {...}}: an open, externally tagged union; kept as sent.
    bonus_data = _optional(fields.Raw)
    state = fields.String(required=True, validate=validate.OneOf(BONUS_STATES))
    # Documented as always present; null until the bonus is consumed/expires.
    timestamp_bonus_awarded = _nullable(Timestamp)
    timestamp_bonus_expires = _nullable(Timestamp)
    timestamp_bonus_consumed = _nullable(Timestamp)


@dataclass(frozen=True, slots=True)
class CampaignDropWin:
    """``thrilldrops/CampaignDropWin``: a player won a campaign reward."""

    reward_id: str
    name: str
    currency: str
    value: Decimal
    reward_valid_from: int | None = None
    reward_valid_to: int | None = None
    image: str | None = None
    animation: str | None = None


@_registered
class CampaignDropWinSchema(BaseSchema):
    """Loads into and dumps :class:`CampaignDropWin`."""

    __model__ = CampaignDropWin
    reward_id = fields.String(required=True)
    reward_valid_from = _optional(Timestamp)
    reward_valid_to = _optional(Timestamp)
    name = fields.String(required=True)
    currency = fields.String(required=True)
    value = Money(required=True)
    image = _optional(fields.String)
    animation = _optional(fields.String)


@dataclass(frozen=True, slots=True)
class PlayerRaffleTicketResponse:
    """⚙ ``PlayerRaffleTicketResponse`` (a Message): a player's tickets in a raffle."""

    instance_id: str
    player_id: str
    ticket_count: int
    brand_id: str | None = None
    ext_player_id: str | None = None
    accumulated_cost: Decimal | None = None
    timestamp_start: int | None = None
    timestamp_end: int | None = None


@_registered
class PlayerRaffleTicketResponseSchema(BaseSchema):
    """Loads into and dumps :class:`PlayerRaffleTicketResponse`."""

    __model__ = PlayerRaffleTicketResponse
    instance_id = fields.String(required=True)
    brand_id = _optional(fields.String)
    player_id = fields.String(required=True)
    ext_player_id = _optional(fields.String)
    ticket_count = Count(required=True)
    accumulated_cost = _optional(Money)
    timestamp_start = _optional(Timestamp)
    timestamp_end = _optional(Timestamp)


@dataclass(frozen=True, slots=True)
class ErrorData:
    """⚙ The ``data`` of an ``Error`` envelope: ``{"code", "message"}``."""

    code: str
    message: str


@_registered
class ErrorDataSchema(BaseSchema):
    """Loads into and dumps :class:`ErrorData`."""

    __model__ = ErrorData
    code = fields.String(required=True)
    message = fields.String(required=True)


class DataLoader(Protocol):
    """What loads an envelope's ``data``: a schema, or :class:`LooseData`."""

    def load(self, data: Any) -> Any: ...


class LooseData:
    """Events whose shape the vendor does not document: ``data`` stays a plain dict."""

    def load(self, data: Any) -> dict[str, Any]:
        """Check that ``data`` is an object and return a copy of it."""
        if not isinstance(data, Mapping):
            raise ValidationError("Must be an object.")
        return dict(data)


_EVENT_SCHEMAS: dict[tuple[str, str], DataLoader] = {
    ("thrillpots", "JackpotUpdate"): schema_for(JackpotUpdate),
    ("thrillpots", "WinEvent"): schema_for(WinEvent),
    ("thrillpots", "RaffleWinEvent"): schema_for(RaffleWinEvent),
    ("thrillpots", "OptInEvent"): schema_for(OptInEvent),
    ("thrillpots", "CommunityPayoutErrorEvent"): LooseData(),
    ("thrillpots", "RafflePayoutErrorEvent"): LooseData(),
    ("thrillpots", "PlayerRaffleTicketResponse"): schema_for(PlayerRaffleTicketResponse),
    **{
        ("thrillgate", f"PlayerBonus{change}"): schema_for(PlayerBonus)
        for change in ("Added", "Updated", "Consumed", "Expired", "Removed")
    },
    ("thrilldrops", "CampaignDropWin"): schema_for(CampaignDropWin),
}
# Answers to requests are recognised by name whatever source the server writes.
_EVENT_SCHEMAS_BY_NAME: dict[str, DataLoader] = {
    "PlayerRaffleTicketResponse": schema_for(PlayerRaffleTicketResponse),
}


def event_schema(msg_type: str, source: str, msg_name: str) -> DataLoader | None:
    """The schema that loads the ``data`` of an envelope, ``None`` for unknown events.

    ``Error`` envelopes always carry :class:`ErrorData`, whatever their ``msg_name`` (it
    names the request that failed).
    """
    if msg_type == "Error":
        return schema_for(ErrorData)
    return _EVENT_SCHEMAS.get((source, msg_name)) or _EVENT_SCHEMAS_BY_NAME.get(msg_name)


# --------------------------------------------------------------------------------------------
# WebSocket envelope
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message from the ThrillConnect WebSocket.

    ``data`` is the loaded dataclass of a known event (e.g. :class:`JackpotUpdate`), a plain
    dict for unknown or loosely documented ones, or :class:`ErrorData` for ``Error``.
    ``seq`` is the relay's per-connection sequence number (absent upstream).
    """

    msg_type: str
    source: str
    msg_name: str
    data: Any
    operator_id: str | None = None
    brand_id: str | None = None
    player_id: str | None = None
    timestamp: int | None = None
    seq: int | None = None


class EventDataField(fields.Raw):
    """The ``data`` of an envelope; dumps a loaded event through its own schema."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if is_dataclass(value) and not isinstance(value, type):
            return _dump(value)
        return value


@_registered
class EnvelopeSchema(BaseSchema):
    """Loads into and dumps :class:`Envelope`."""

    __model__ = Envelope
    msg_type = fields.String(required=True, validate=validate.OneOf(MSG_TYPES))
    source = fields.String(required=True)
    msg_name = fields.String(required=True)
    operator_id = _optional(fields.String)
    brand_id = _optional(fields.String)
    player_id = _nullable(fields.String)
    data = EventDataField(required=True, allow_none=True)
    timestamp = _optional(Timestamp)
    seq = _optional(Count)

    @post_load
    def _make_model(self, data: dict[str, Any], **kwargs: Any) -> Any:
        schema = event_schema(data["msg_type"], data["source"], data["msg_name"])
        if schema is not None:
            try:
                data["data"] = schema.load(data["data"])
            except ValidationError as error:
                raise ValidationError({"data": error.messages}) from error
        return Envelope(**data)


def _reject_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def parse_json(obj: str | bytes | bytearray, limit: int | None = None) -> Any:
    """Parse JSON text from a browser or from upstream; every way it can be bad is one error.

    :param obj: the text or its UTF-8 bytes.
    :param limit: the largest accepted length, ``None`` for no bound here.
    :raises ValueError: too large, not UTF-8, not JSON, ``NaN``/``Infinity``, or nested so
        deeply that the parser gives up (which Python reports as :class:`RecursionError`).
    """
    if limit is not None and len(obj) > limit:
        raise ValueError(f"larger than {limit} bytes")
    try:
        return json.loads(obj, parse_constant=_reject_constant)
    except RecursionError:
        # A few kilobytes of "[[[[…" are enough: refuse them like any other bad JSON.
        raise ValueError("nested too deeply") from None


def _summarize(messages: Any, prefix: str = "", limit: int = 300) -> str:
    """Flatten marshmallow's nested error messages into ``path: message`` text (bounded)."""
    parts: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for child in node:
                walk(child, path)
        else:
            parts.append(f"{path or prefix or 'value'}: {node}")

    walk(messages, prefix)
    text = "; ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_envelope(obj: str | bytes | bytearray | Mapping[str, Any]) -> Envelope:
    """Load a WebSocket message from ThrillConnect, including its event ``data``.

    :param obj: the message text/bytes, or the already parsed JSON object.
    :raises UpstreamUnavailable: when the message is not JSON or does not load.
    """
    try:
        payload = obj if isinstance(obj, Mapping) else parse_json(obj, MAX_ENVELOPE_BYTES)
    except ValueError as error:
        raise UpstreamUnavailable("invalid WebSocket message: not a JSON object") from error
    if not isinstance(payload, Mapping):
        raise UpstreamUnavailable("invalid WebSocket message: not a JSON object")
    try:
        return schema_for(Envelope).load(payload)
    except ValidationError as error:
        raise UpstreamUnavailable(
            f"invalid WebSocket message: {_summarize(error.messages)}"
        ) from error


def dump_envelope(envelope: Envelope) -> dict[str, Any]:
    """The wire form of an envelope (its ``data`` dumped through the event's schema)."""
    return schema_for(Envelope).dump(envelope)


# --------------------------------------------------------------------------------------------
# WebSocket client requests
# --------------------------------------------------------------------------------------------


def _event_type(value: str) -> None:
    if value != "*":
        try:
            validation.identifier(value, "event_type")
        except InvalidIdentifier as error:
            raise ValidationError(error.problem) from error


def _contribution(**kwargs: Any) -> fields.Field:
    return _optional(
        Money, validate=validate.Range(min=0, max=MAX_CONTRIBUTION, min_inclusive=False), **kwargs
    )


@dataclass(frozen=True, slots=True)
class EventSubscription:
    """One subscription: a source and an event name or ``*``."""

    source: str
    event_type: str = "*"


@_registered
class EventSubscriptionSchema(BaseSchema):
    """Loads into and dumps :class:`EventSubscription`."""

    __model__ = EventSubscription
    source = fields.String(required=True, validate=validate.OneOf(EVENT_SOURCES))
    event_type = fields.String(required=True, validate=_event_type)


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """``SubscribeRequest``: subscriptions add up; there is no acknowledgement."""

    events: tuple[EventSubscription, ...]


@_registered
class SubscribeRequestSchema(BaseSchema):
    """Loads into and dumps :class:`SubscribeRequest`."""

    __model__ = SubscribeRequest
    events = Sequence(
        fields.Nested(EventSubscriptionSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_SUBSCRIPTIONS),
    )


@dataclass(frozen=True, slots=True)
class PlayerOptInRequest:
    """``PlayerOptInRequest``: opt a player in or out of an instance (``brand_id`` joined)."""

    instance_id: str
    player_id: str
    brand_id: str
    player_country: str
    opt_in: bool
    contribution_value: Decimal | None = None


@_registered
class PlayerOptInRequestSchema(BaseSchema):
    """Loads into and dumps :class:`PlayerOptInRequest`."""

    __model__ = PlayerOptInRequest
    instance_id = _identifier(required=True)
    player_id = _identifier(required=True)
    brand_id = _identifier(required=True)
    player_country = _country(required=True)
    opt_in = StrictBoolean(required=True)
    contribution_value = _contribution()


@dataclass(frozen=True, slots=True)
class OptInTarget:
    """What a ``PlayerOptInRequestV2`` is about: an ``instance`` or a ``source``."""

    type: str
    id: str


@_registered
class OptInTargetSchema(BaseSchema):
    """Loads into and dumps :class:`OptInTarget`."""

    __model__ = OptInTarget
    type = fields.String(required=True, validate=validate.OneOf(("instance", "source")))
    id = _identifier(required=True)


@dataclass(frozen=True, slots=True)
class OptInPlayer:
    """The player of a ``PlayerOptInRequestV2`` (``brand_id`` bare)."""

    id: str
    country: str
    brand_id: str


@_registered
class OptInPlayerSchema(BaseSchema):
    """Loads into and dumps :class:`OptInPlayer`."""

    __model__ = OptInPlayer
    id = _identifier(required=True)
    country = _country(required=True)
    brand_id = _identifier(required=True)


@dataclass(frozen=True, slots=True)
class PlayerOptInRequestV2:
    """``PlayerOptInRequestV2``: opt-in by instance or by source."""

    target: OptInTarget
    operator_id: str
    player: OptInPlayer
    opt_in: bool
    contribution_value: Decimal | None = None
    opt_linked: bool | None = None


@_registered
class PlayerOptInRequestV2Schema(BaseSchema):
    """Loads into and dumps :class:`PlayerOptInRequestV2`."""

    __model__ = PlayerOptInRequestV2
    target = fields.Nested(OptInTargetSchema, required=True)
    operator_id = _identifier(required=True)
    player = fields.Nested(OptInPlayerSchema, required=True)
    opt_in = StrictBoolean(required=True)
    contribution_value = _contribution()
    opt_linked = _optional(StrictBoolean)


@dataclass(frozen=True, slots=True)
class PlayerRaffleTicketsRequest:
    """``PlayerRaffleTicketsRequest``: ask for a player's tickets in a raffle."""

    player_id: str
    instance_id: str
    brand_id: str


@_registered
class PlayerRaffleTicketsRequestSchema(BaseSchema):
    """Loads into and dumps :class:`PlayerRaffleTicketsRequest`."""

    __model__ = PlayerRaffleTicketsRequest
    player_id = _identifier(required=True)
    instance_id = _identifier(required=True)
    brand_id = _identifier(required=True)


_CLIENT_REQUESTS: dict[str, type] = {
    "SubscribeRequest": SubscribeRequest,
    "PlayerOptInRequest": PlayerOptInRequest,
    "PlayerOptInRequestV2": PlayerOptInRequestV2,
    "PlayerRaffleTicketsRequest": PlayerRaffleTicketsRequest,
}
_CLIENT_REQUEST_NAME = {model: name for name, model in _CLIENT_REQUESTS.items()}
CLIENT_REQUEST_NAMES = tuple(_CLIENT_REQUESTS)

ClientRequest = (
    SubscribeRequest | PlayerOptInRequest | PlayerOptInRequestV2 | PlayerRaffleTicketsRequest
)


def load_client_request(
    obj: str | bytes | bytearray | Mapping[str, Any],
) -> tuple[str, ClientRequest]:
    """Validate a request a browser sends on the WebSocket.

    The message must be a JSON object with exactly one key naming a known request; its values
    are bounded and its identifiers validated.

    :param obj: the message text/bytes, or the parsed object.
    :returns: ``(name, request)``, e.g. ``("SubscribeRequest", SubscribeRequest(...))``.
    :raises InvalidRequest: saying what is wrong (never echoing the values).
    """
    try:
        payload = obj if isinstance(obj, Mapping) else parse_json(obj, MAX_CLIENT_REQUEST_BYTES)
    except ValueError as error:
        raise InvalidRequest("the message is not valid JSON or too large") from error
    if not isinstance(payload, Mapping) or len(payload) != 1:
        raise InvalidRequest("the message must be a JSON object with exactly one request key")
    ((name, body),) = payload.items()
    model = _CLIENT_REQUESTS.get(name)
    if model is None:
        raise InvalidRequest(f"unknown request; expected one of: {', '.join(CLIENT_REQUEST_NAMES)}")
    if not isinstance(body, Mapping):
        raise InvalidRequest(f"{name} must be a JSON object", field=name)
    try:
        return name, schema_for(model).load(body)
    except ValidationError as error:
        raise InvalidRequest(f"invalid {name}: {_summarize(error.messages)}", field=name) from error


def dump_client_request(request: ClientRequest) -> dict[str, Any]:
    """The wire object of a request: ``{"SubscribeRequest": {...}}``."""
    name = _CLIENT_REQUEST_NAME[type(request)]
    return {name: _dump(request)}


def client_request_json(request: ClientRequest) -> str:
    """The JSON text of :func:`dump_client_request`, ready to send."""
    return to_json(dump_client_request(request))


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _MONEY._serialize(value, None, None)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(obj: Any) -> str:
    """Compact JSON text of a dumped object (a stray :class:`~decimal.Decimal` → number)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_json_default)
