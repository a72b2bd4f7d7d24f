"""The answers of ThrillConnect's REST API, as frozen dataclasses with their schemas.

Fields are declared in the order upstream writes them, so dumps reproduce the wire shape key
for key (ticker money as decimal strings, every other amount as a JSON number).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Literal, get_args

from marshmallow import ValidationError, validate

from ..errors import UnknownCurrency
from ..limits import FIXED_CONTRIBUTION_MAX_FACTOR, PERCENTAGE_CONTRIBUTION_RANGE
from .base import wire_schema
from .fields import (
    CORS_PATTERN_RULES,
    ContributionType,
    ContributionTypeField,
    Count,
    DecimalText,
    Nullable,
    Strict,
    Timestamp,
)
from .stream import OptInEvent

__all__ = [
    "JACKPOT_STATUSES",
    "JACKPOT_TYPES",
    "MATCH_MODES",
    "CorsList",
    "CorsListSchema",
    "CorsOrigin",
    "CorsOriginSchema",
    "CorsRemoval",
    "CorsRemovalSchema",
    "Currencies",
    "CurrenciesSchema",
    "Health",
    "HealthSchema",
    "Jackpot",
    "JackpotPot",
    "JackpotPotSchema",
    "JackpotSchema",
    "OptInStatus",
    "OptInStatusSchema",
    "PotContribution",
    "PotContributionSchema",
    "Source",
    "SourceJackpot",
    "SourceJackpotSchema",
    "SourceSchema",
    "Ticker",
    "TickerPot",
    "TickerPotSchema",
    "TickerSchema",
    "contribution_range",
]

JackpotStatus = Literal["Pending", "Active", "Paused", "Terminated"]
JackpotType = Literal["Jackpot", "Raffle"]
JACKPOT_STATUSES: tuple[str, ...] = get_args(JackpotStatus)
JACKPOT_TYPES: tuple[str, ...] = get_args(JackpotType)
MATCH_MODES = ("Exact", "Wildcard", "Regex")

#: A pot's share of a win paid to the community, 0 to 1.
Share = Annotated[Decimal, validate.Range(min=0, max=1)]
ShareText = Annotated[DecimalText, validate.Range(min=0, max=1)]


def _positive(rates: Mapping[str, Decimal]) -> None:
    if any(rate <= 0 for rate in rates.values()):
        raise ValidationError("Every multiplier must be positive.")


#: Exchange rates: units of a currency per one unit of the base currency.
Multipliers = Annotated[dict[str, Decimal], _positive]


# -- the jackpot of a source -----------------------------------------------------------------


def contribution_range(contribution_type: ContributionType) -> tuple[Decimal, Decimal]:
    """⚙ The contribution a player may choose, as an inclusive ``(min, max)``.

    A simulator convention (the vendor is silent): ``Fixed v`` allows ``[v, 10·v]``;
    ``Percentage`` allows ``[0.01, 0.10]`` (:mod:`flask_thrillconnect.limits`).
    """
    if contribution_type.kind == "Fixed":
        return contribution_type.value, contribution_type.value * FIXED_CONTRIBUTION_MAX_FACTOR
    return PERCENTAGE_CONTRIBUTION_RANGE


@dataclass(frozen=True, slots=True)
class PotContribution:
    """A player's contributions to one pot."""

    contribution_count: Count
    contribution_value: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class OptInStatus(OptInEvent):
    """A player's opt-in state for a jackpot instance (``optin_status`` of a jackpot).

    What an ``OptInEvent`` says, and the seed's further fields (dumped after those).
    """

    doc_version: str | None = None
    preferred_contribution_currency: str | None = None
    # Strings on the wire ({"EUR": "0.1"}); the seed types them as plain strings, so they are
    # kept as sent rather than parsed.
    contribution_preferences: dict[str, str] | None = None
    pot_contributions: dict[str, PotContribution] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JackpotPot:
    """One pot of a jackpot (``minor``, ``major``…), money in the jackpot's currency."""

    id: str
    instance_count: Count | None = None
    is_progressive: bool
    current_value: Decimal
    community_split: Share


@dataclass(frozen=True, slots=True, kw_only=True)
class Jackpot:
    """The jackpot instance ThrillConnect picked for a source, brand and player."""

    id: str
    currency: str
    opt_in_required: bool
    contribution_type: Annotated[ContributionType, ContributionTypeField]
    optin_status: Nullable[OptInStatus] = None
    pots: tuple[JackpotPot, ...]
    timestamp_start: Timestamp
    timestamp_end: Nullable[Timestamp] = None
    status: JackpotStatus


# -- sources, ticker, currencies, health -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceJackpot:
    """A jackpot instance a source feeds; the lowest ``priority`` number wins."""

    priority: int
    owner_id: str
    instance_id: str


@dataclass(frozen=True, slots=True)
class Source:
    """A point of the player journey that contributes to jackpots (a game, ``sportsbook``…)."""

    owner_id: str
    source_name: str
    source_id: str
    jackpots: tuple[SourceJackpot, ...]


@dataclass(frozen=True, slots=True)
class TickerPot:
    """A pot as the ticker shows it (money from decimal strings)."""

    id: str
    is_progressive: bool
    current_value: DecimalText
    community_split: ShareText


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticker:
    """The live values of one jackpot instance."""

    id: str
    jackpot_type: JackpotType
    currency: str
    pots: tuple[TickerPot, ...]
    allowed_brands: tuple[str, ...]
    allowed_sources: tuple[str, ...]
    status: JackpotStatus
    timestamp_start: Timestamp
    timestamp_end: Nullable[Timestamp] = None
    last_updated: Timestamp


@dataclass(frozen=True, slots=True)
class Currencies:
    """Exchange rates: ``multipliers[ccy]`` units of ``ccy`` per one unit of the base."""

    last_updated: Timestamp
    base_currency: str
    multipliers: Multipliers

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


@dataclass(frozen=True, slots=True)
class Health:
    """``GET /health`` of ThrillConnect."""

    version: str


# -- CORS origin rules -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CorsOrigin:
    """A browser origin rule: ``pattern`` matched ``Exact``, by ``Wildcard`` or ``Regex``.

    Rules upstream lists load as they are; rules the portal sends are checked
    (:data:`~flask_thrillconnect.models.bodies.CorsRuleBody`).
    """

    pattern: Annotated[str, Strict(*CORS_PATTERN_RULES)]
    match_mode: Annotated[str, Strict(validate.OneOf(MATCH_MODES))]


@dataclass(frozen=True, slots=True)
class CorsList:
    """The CORS origin rules (``GET``/``PUT /v1/cors`` answers)."""

    rules: tuple[CorsOrigin, ...] = field(metadata={"data_key": "cors_origin_list"})


@dataclass(frozen=True, slots=True)
class CorsRemoval:
    """The ``DELETE /v1/cors`` answer: how many rules went and what remains."""

    removed: Count
    rules: tuple[CorsOrigin, ...] = field(metadata={"data_key": "cors_origin_list"})


PotContributionSchema = wire_schema(PotContribution)
OptInStatusSchema = wire_schema(OptInStatus)
JackpotPotSchema = wire_schema(JackpotPot)
JackpotSchema = wire_schema(Jackpot)
SourceJackpotSchema = wire_schema(SourceJackpot)
SourceSchema = wire_schema(Source)
TickerPotSchema = wire_schema(TickerPot)
TickerSchema = wire_schema(Ticker)
CurrenciesSchema = wire_schema(Currencies)
HealthSchema = wire_schema(Health)
CorsOriginSchema = wire_schema(CorsOrigin)
CorsListSchema = wire_schema(CorsList)
CorsRemovalSchema = wire_schema(CorsRemoval)
