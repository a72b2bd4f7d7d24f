"""What the simulated platform is made of: its fixed facts, its objects and its conventions.

The objects (pots, instances, wallet players, opt-in records, events) are plain data; the
:class:`~.world.World` changes them under its lock. The simulator conventions (⚙ in the API
notes) that are rules live together in the section "Simulator conventions" below; the others
are told where they are applied (:mod:`.world`, :mod:`.wire`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .errors import InvalidInput

OPERATOR_ID = "thrilltech"
BRAND_IDS = ("brand1", "brand2")
BASE_CURRENCY = "EUR"
#: Units of each currency per one EUR: the multipliers of the vendor's example.
EXCHANGE_RATES: dict[str, Decimal] = {
    "EUR": Decimal("1.0"),
    "USD": Decimal("1.0762"),
    "GBP": Decimal("0.8592"),
    "CAD": Decimal("1.4753"),
    "PLN": Decimal("4.311"),
    "NZD": Decimal("1.7921"),
    "AUD": Decimal("1.6303"),
    "RON": Decimal("4.9753"),
    "SGD": Decimal("1.4567"),
    "SEK": Decimal("11.6761"),
}
PLATFORM_VERSION = "2025.09-simulator"
CENT = Decimal("0.01")


def owner_id_of(brand_id: str) -> str:
    """Join the operator and a bare brand id into an owner id (``thrilltech:brand1``)."""
    return f"{OPERATOR_ID}:{brand_id}"


def bare_brand_id(brand: str) -> str | None:
    """Accept a brand in either form (``brand1`` or ``thrilltech:brand1``); ``None`` if unknown."""
    operator, _, bare = brand.rpartition(":")
    if operator not in ("", OPERATOR_ID):
        return None
    return bare if bare in BRAND_IDS else None


def convert(amount: Decimal, from_currency: str, to_currency: str) -> Decimal:
    """Convert money with the platform's rates (``in_ccy = in_base * multipliers[ccy]``)."""
    in_base = amount / EXCHANGE_RATES[from_currency]
    return (in_base * EXCHANGE_RATES[to_currency]).quantize(CENT)


# ---------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------
@dataclass
class Pot:
    """One pot of a jackpot instance; money as ``Decimal`` with two decimals."""

    id: str
    is_progressive: bool
    seed_value: Decimal
    community_split: Decimal
    current_value: Decimal
    #: ⚙ how many times this pot has been seeded: 1 at start, +1 after each win.
    instance_count: int = 1


@dataclass
class Instance:
    """A jackpot instance: its pots, who may play it and its life cycle."""

    role: str
    id: str
    name: str
    jackpot_type: str
    currency: str
    status: str
    opt_in_required: bool
    contribution_kind: str
    contribution_value: Decimal
    allowed_brands: tuple[str, ...]
    excluded_countries: frozenset[str]
    required_segments: frozenset[str]
    pots: list[Pot]
    timestamp_start: int
    timestamp_end: int | None
    last_updated: int
    allowed_sources: list[str] = field(default_factory=list)
    ticks_in_period: int = 0

    def pot(self, pot_id: str) -> Pot | None:
        """The pot called ``pot_id``, if any."""
        return next((pot for pot in self.pots if pot.id == pot_id), None)


@dataclass(frozen=True)
class Source:
    """A game (or flow) feeding jackpots: who owns it and its ``(priority, instance)`` list."""

    source_id: str
    name: str
    owners: tuple[str, ...]
    jackpots: tuple[tuple[int, Instance], ...]


@dataclass(frozen=True)
class WalletPlayer:
    """A player of the operator's wallet (not the portal's
    :class:`~flask_thrillconnect.Player`, which :meth:`.Simulator.player` builds from one)."""

    id: str
    token: str
    currency: str
    country: str
    segments: tuple[str, ...]
    brand_id: str
    operator_id: str = OPERATOR_ID

    @property
    def owner_id(self) -> str:
        """The player's brand in the joined form."""
        return f"{self.operator_id}:{self.brand_id}"


@dataclass
class OptInRecord:
    """A player's opt-in choice on one instance and what it has contributed since."""

    opted_in: bool
    preferred_value: Decimal
    last_updated: int
    contribution_count: int = 0
    contribution_value: Decimal = Decimal(0)
    pot_contributions: dict[str, tuple[int, Decimal]] = field(default_factory=dict)
    tickets: int = 0


@dataclass(frozen=True)
class Event:
    """One message of the live stream, before routing.

    ``brand_id`` is the bare brand of the envelope (``None`` on an answer to a service
    connection); ``player_id`` is set for events targeted at one player; ``service_only`` events
    reach service connections only.
    """

    source: str
    msg_name: str
    brand_id: str | None
    player_id: str | None
    data: dict[str, Any]
    timestamp: int
    service_only: bool = False
    msg_type: str = "Event"


# ---------------------------------------------------------------------------------------------
# Simulator conventions (⚙): the decisions the vendor documentation leaves open.
# ---------------------------------------------------------------------------------------------
#: ⚙ Statuses an instance may be in to be chosen for a source (and opted in to).
SELECTABLE_STATUSES = ("Active", "Pending")
#: ⚙ The stake a simulated bet puts down each tick, for ``Percentage`` contributions.
SIMULATED_STAKE = Decimal("1.00")
#: ⚙ A raffle draws after this many ticks (or when told to by ``/_sim/win``).
RAFFLE_DRAW_TICKS = 20
RAFFLE_PERIOD_MS = 3_600_000
CORS_MATCH_MODES = ("Exact", "Wildcard", "Regex")


def is_eligible(
    instance: Instance, owner_id: str, country: str | None, segments: Iterable[str]
) -> bool:
    """⚙ Whether a player of ``owner_id`` in ``country`` with ``segments`` may play ``instance``.

    The brand must be allowed; an excluded country excludes (an unknown country does not);
    an instance restricted to segments needs at least one of them.
    """
    if owner_id not in instance.allowed_brands:
        return False
    if country and country.upper() in instance.excluded_countries:
        return False
    return not instance.required_segments or bool(instance.required_segments & set(segments))


def select_instance(
    candidates: Sequence[tuple[int, Instance]],
    owner_id: str,
    country: str | None,
    segments: Iterable[str],
) -> Instance | None:
    """⚙ Pick the jackpot for a source: among ``(priority, instance)`` candidates that are
    ``Active`` or ``Pending`` and eligible, the lowest priority number wins."""
    segment_set = set(segments)
    eligible = [
        (priority, instance)
        for priority, instance in candidates
        if instance.status in SELECTABLE_STATUSES
        and is_eligible(instance, owner_id, country, segment_set)
    ]
    if not eligible:
        return None
    return min(eligible, key=lambda candidate: candidate[0])[1]


def allowed_contribution_range(kind: str, value: Decimal) -> tuple[Decimal, Decimal]:
    """⚙ The contribution a player may choose: ``[Fixed, 10 * Fixed]`` for a ``Fixed`` value,
    ``[0.01, 0.10]`` for a ``Percentage``."""
    if kind == "Fixed":
        return value, value * 10
    return Decimal("0.01"), Decimal("0.10")


def contribution_per_bet(kind: str, preferred: Decimal) -> Decimal:
    """⚙ What one simulated bet contributes: the fixed value, or the percentage of the stake."""
    return preferred if kind == "Fixed" else preferred * SIMULATED_STAKE


def cors_rule_regex(pattern: str, match_mode: str) -> re.Pattern[str]:
    """⚙ Compile a CORS rule: ``Exact`` compares the whole origin, ``Wildcard``'s ``*`` matches
    within one host label, ``Regex`` must match the whole origin.

    :raises InvalidInput: for an unknown match mode or an invalid regular expression.
    """
    if match_mode == "Exact":
        return re.compile(re.escape(pattern))
    if match_mode == "Wildcard":
        return re.compile("[A-Za-z0-9-]+".join(re.escape(part) for part in pattern.split("*")))
    if match_mode == "Regex":
        try:
            return re.compile(pattern)
        except re.error as e:
            raise InvalidInput("invalid_cors_rule", f"invalid regular expression: {e}") from e
    raise InvalidInput(
        "invalid_cors_rule", f"match_mode must be one of {', '.join(CORS_MATCH_MODES)}"
    )
