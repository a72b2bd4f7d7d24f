"""The simulated ThrillConnect platform's state and rules, with no web framework in sight.

Everything is seeded: the same ``seed`` and the same sequence of calls give the same instance
ids, pot values, winners and draws (timestamps follow the clock). One lock guards all state, so
the web server may call in from any thread. Methods return plain dicts in the exact upstream
JSON shapes (see ``THRILLCONNECT_API.md``) and :class:`Event` objects for the live stream.

The simulator conventions (⚙ in the API notes) that are rules live together in the section
"Simulator conventions" below. The others, all in this module:

- ``brand_id`` inside event data (``WinEvent``, ``RaffleWinEvent``, ``currency_multipliers``)
  uses the joined owner form, like ``player_brand_id``; envelopes use the bare brand.
- ``win_amount`` is the pot's value when it won; ``community_winners`` (the other players opted
  in to the instance) share ``community_split`` of it, each in their wallet currency. With no
  one to share with, a service-only ``CommunityPayoutErrorEvent`` reports it.
- A raffle draw picks a ticket holder (weighted by tickets; one ticket per tick for opted-in
  players); with no tickets the draw is ``win_withheld`` with no winners and a service-only
  ``RafflePayoutErrorEvent``.
- A pot's ``instance_count`` counts its seedings: 1 at start, +1 after each win.
- ``optin_status`` of a player who never chose: not opted in, zero counts, the default
  contribution, ``last_updated`` 0. Contributions are in the jackpot's currency.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

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
#: A raffle draws after this many ticks (or when told to by ``/_sim/win``).
RAFFLE_DRAW_TICKS = 20
RAFFLE_PERIOD_MS = 3_600_000
MAX_CORS_RULES = 100
CORS_MATCH_MODES = ("Exact", "Wildcard", "Regex")

CENT = Decimal("0.01")
_SHARE_PRECISION = Decimal("0.0001")
_DAY_MS = 86_400_000
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_TOKEN = re.compile(r"[!-~]{1,512}")  # printable ASCII, no whitespace
_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_MAX_SEGMENTS = 20
_MAX_PATTERN_LENGTH = 512


# ---------------------------------------------------------------------------------------------
# Errors: each carries a snake_case code that the server puts on the wire as is.
# ---------------------------------------------------------------------------------------------
class WorldError(Exception):
    """A request the platform refuses; ``code`` is the snake_case error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(WorldError):
    """No such instance, pot, source or player."""


class Rejected(WorldError):
    """The request is well formed but not allowed (eligibility, range, state)."""


class InvalidInput(WorldError):
    """The request is malformed."""


# ---------------------------------------------------------------------------------------------
# Domain objects
# ---------------------------------------------------------------------------------------------
def owner_id_of(brand_id: str) -> str:
    """Join the operator and a bare brand id into an owner id (``thrilltech:brand1``)."""
    return f"{OPERATOR_ID}:{brand_id}"


def bare_brand_id(brand: str) -> str | None:
    """Accept a brand in either form (``brand1`` or ``thrilltech:brand1``); ``None`` if unknown."""
    operator, _, bare = brand.rpartition(":")
    if operator not in ("", OPERATOR_ID):
        return None
    return bare if bare in BRAND_IDS else None


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
class Player:
    """A player of the operator's wallet."""

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

    def profile(self) -> dict[str, Any]:
        """The wallet profile the platform resolves a player token to."""
        return {
            "id": self.id,
            "currency": self.currency,
            "country": self.country,
            "segments": list(self.segments),
            "operator_id": self.operator_id,
            "brand_id": self.brand_id,
        }


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

    ``brand_id`` is the bare brand of the envelope; ``player_id`` is set for events targeted at
    one player; ``service_only`` events reach service connections only.
    """

    source: str
    msg_name: str
    brand_id: str
    player_id: str | None
    data: dict[str, Any]
    timestamp: int
    service_only: bool = False
    msg_type: str = "Event"

    def envelope(self) -> dict[str, Any]:
        """The wire envelope of this event."""
        return {
            "msg_type": self.msg_type,
            "source": self.source,
            "msg_name": self.msg_name,
            "operator_id": OPERATOR_ID,
            "brand_id": self.brand_id,
            "player_id": self.player_id,
            "data": self.data,
            "timestamp": self.timestamp,
        }


# ---------------------------------------------------------------------------------------------
# Simulator conventions (⚙): the decisions the vendor documentation leaves open.
# ---------------------------------------------------------------------------------------------
#: ⚙ Statuses an instance may be in to be chosen for a source (and opted in to).
SELECTABLE_STATUSES = ("Active", "Pending")
#: ⚙ The stake a simulated bet puts down each tick, for ``Percentage`` contributions.
SIMULATED_STAKE = Decimal("1.00")


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


# ---------------------------------------------------------------------------------------------
# The seeded world
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _PotSpec:
    id: str
    seed_value: str
    community_split: str = "0"
    is_progressive: bool = True


@dataclass(frozen=True)
class _InstanceSpec:
    role: str
    name: str
    currency: str
    pots: tuple[_PotSpec, ...]
    brands: tuple[str, ...] = ("brand1",)
    jackpot_type: str = "Jackpot"
    status: str = "Active"
    opt_in_required: bool = False
    contribution: tuple[str, str] = ("Fixed", "0.1")
    excluded_countries: tuple[str, ...] = ()
    required_segments: tuple[str, ...] = ()


_MINOR_MAJOR = (_PotSpec("minor", "10.00", "0.1"), _PotSpec("major", "100.00", "0.1"))
_INSTANCE_SPECS = (
    _InstanceSpec(
        "progressive",
        "Egyptian Gold Jackpot",
        "EUR",
        (*_MINOR_MAJOR, _PotSpec("mega", "10000.00", "0.2")),
        opt_in_required=True,
    ),
    _InstanceSpec("egyptian_fallback", "Egyptian Classic", "EUR", (_PotSpec("main", "50.00"),)),
    _InstanceSpec(
        "no_gb",
        "Viking Runes Jackpot",
        "EUR",
        (_PotSpec("minor", "20.00", "0.1"), _PotSpec("major", "200.00", "0.1")),
        excluded_countries=("GB",),
    ),
    _InstanceSpec(
        "viking_fallback",
        "Viking Classic",
        "EUR",
        (_PotSpec("main", "25.00"),),
        contribution=("Percentage", "0.01"),
    ),
    _InstanceSpec(
        "vip",
        "VIP Millions",
        "EUR",
        (_PotSpec("vip", "1000.00", "0.1"),),
        brands=BRAND_IDS,
        required_segments=("vip",),
    ),
    _InstanceSpec("sitewide", "Sitewide Jackpot", "EUR", _MINOR_MAJOR, brands=BRAND_IDS),
    _InstanceSpec(
        "raffle",
        "Sportsbook Raffle",
        "EUR",
        (_PotSpec("prize", "500.00", is_progressive=False),),
        jackpot_type="Raffle",
        opt_in_required=True,
        contribution=("Fixed", "1.0"),
    ),
    _InstanceSpec(
        "pending", "Deposit Bonanza", "EUR", (_PotSpec("main", "100.00"),), status="Pending"
    ),
    _InstanceSpec(
        "brand2",
        "Golden Dragon Jackpot",
        "GBP",
        (_PotSpec("minor", "10.00", "0.1"), _PotSpec("major", "250.00", "0.1")),
        brands=("brand2",),
    ),
)

# source_id, human name, owning brands, (instance role, priority)...
_SOURCE_SPECS: tuple[tuple[str, str, tuple[str, ...], tuple[tuple[str, int], ...]], ...] = (
    ("egyptian-gold", "Egyptian Gold", ("brand1",), (("progressive", 0), ("egyptian_fallback", 1))),
    ("book-of-ra", "Book of Ra", ("brand1",), (("egyptian_fallback", 0),)),
    ("viking-runes", "Viking Runes", ("brand1",), (("no_gb", 0), ("viking_fallback", 1))),
    ("sitewide-casino", "Sitewide Casino", BRAND_IDS, (("vip", 0), ("sitewide", 1))),
    ("sportsbook", "Sportsbook", ("brand1",), (("raffle", 0),)),
    ("deposit-flow", "Deposit Flow", ("brand1",), (("pending", 0),)),
    ("golden-dragon", "Golden Dragon", ("brand2",), (("brand2", 0),)),
)

# id, currency, country, segments, brand (tokens are token_<number>)
_WALLET = (
    ("00001", "EUR", "MT", ("vip",), "brand1"),
    ("00002", "GBP", "GB", (), "brand1"),
    ("00003", "USD", "DE", (), "brand1"),
    ("00004", "SEK", "SE", ("vip",), "brand1"),
    ("00005", "EUR", "DE", (), "brand2"),
    ("00006", "CAD", "CA", (), "brand1"),
    ("00007", "PLN", "PL", (), "brand1"),
    ("00008", "NZD", "NZ", ("vip",), "brand1"),
    ("00009", "AUD", "AU", (), "brand2"),
    ("00010", "RON", "RO", (), "brand1"),
    ("00011", "SGD", "SG", (), "brand2"),
    ("00012", "GBP", "GB", ("vip",), "brand2"),
)

_DEFAULT_CORS_RULES = (
    {"pattern": "http://127.0.0.1:5000", "match_mode": "Exact"},
    {"pattern": "http://localhost:5000", "match_mode": "Exact"},
)


@dataclass(frozen=True)
class _Source:
    source_id: str
    name: str
    owners: tuple[str, ...]
    jackpots: tuple[tuple[int, Instance], ...]


def _money(value: Decimal) -> float:
    return float(value)


def _to_decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput("invalid_request", f"{what} must be a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation as e:
        raise InvalidInput("invalid_request", f"{what} must be a number") from e
    if not number.is_finite():
        raise InvalidInput("invalid_request", f"{what} must be a finite number")
    return number


def convert(amount: Decimal, from_currency: str, to_currency: str) -> Decimal:
    """Convert money with the platform's rates (``in_ccy = in_base * multipliers[ccy]``)."""
    in_base = amount / EXCHANGE_RATES[from_currency]
    return (in_base * EXCHANGE_RATES[to_currency]).quantize(CENT)


class World:
    """The seeded, thread-safe state of one simulated ThrillConnect platform.

    :param seed: drives instance ids, starting values, growth, random wins and draws.
    :param win_chance: probability per active jackpot per tick of a random win.
    :param clock: epoch seconds; injectable for tests.
    """

    def __init__(
        self, seed: int = 1, win_chance: float = 0.0, clock: Callable[[], float] = time.time
    ) -> None:
        if not 0.0 <= win_chance <= 1.0:
            raise ValueError("win_chance must be between 0 and 1")
        self._lock = threading.Lock()
        self._clock = clock
        self._win_chance = win_chance
        # Separate streams, so that random wins never shift the growth sequence.
        self._growth_rng = random.Random(f"{seed}:growth")
        self._win_rng = random.Random(f"{seed}:wins")
        self._instances = self._build_instances(random.Random(seed))
        self._by_id = {instance.id: instance for instance in self._instances}
        self._sources = self._build_sources()
        self._players: dict[str, Player] = {}
        self._player_by_token: dict[str, Player] = {}
        for number, currency, country, segments, brand in _WALLET:
            self._register(
                Player(f"player_{number}", f"token_{number}", currency, country, segments, brand)
            )
        self._optins: dict[tuple[str, str], OptInRecord] = {}
        self._cors: dict[str, tuple[dict[str, str], re.Pattern[str]]] = {}
        for rule in _DEFAULT_CORS_RULES:
            self._cors[rule["pattern"]] = (
                dict(rule),
                cors_rule_regex(rule["pattern"], rule["match_mode"]),
            )

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _build_instances(self, rng: random.Random) -> list[Instance]:
        now = self._now_ms()
        instances = []
        for spec in _INSTANCE_SPECS:
            instance_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            pots = []
            for pot_spec in spec.pots:
                seed_value = Decimal(pot_spec.seed_value)
                head_start = Decimal(0)
                if pot_spec.is_progressive and spec.status == "Active":
                    head_start = (seed_value * rng.randint(0, 50) / 100).quantize(CENT)
                pots.append(
                    Pot(
                        id=pot_spec.id,
                        is_progressive=pot_spec.is_progressive,
                        seed_value=seed_value,
                        community_split=Decimal(pot_spec.community_split),
                        current_value=seed_value + head_start,
                    )
                )
            if spec.jackpot_type == "Raffle":
                start, end = now, now + RAFFLE_PERIOD_MS
            elif spec.status == "Pending":
                start, end = now + _DAY_MS, None
            else:
                start, end = now - 7 * _DAY_MS, None
            kind, value = spec.contribution
            instances.append(
                Instance(
                    role=spec.role,
                    id=instance_id,
                    name=spec.name,
                    jackpot_type=spec.jackpot_type,
                    currency=spec.currency,
                    status=spec.status,
                    opt_in_required=spec.opt_in_required,
                    contribution_kind=kind,
                    contribution_value=Decimal(value),
                    allowed_brands=tuple(owner_id_of(brand) for brand in spec.brands),
                    excluded_countries=frozenset(spec.excluded_countries),
                    required_segments=frozenset(spec.required_segments),
                    pots=pots,
                    timestamp_start=start,
                    timestamp_end=end,
                    last_updated=now,
                )
            )
        return instances

    def _build_sources(self) -> dict[str, _Source]:
        by_role = {instance.role: instance for instance in self._instances}
        sources = {}
        for source_id, name, brands, jackpots in _SOURCE_SPECS:
            sources[source_id] = _Source(
                source_id,
                name,
                tuple(owner_id_of(brand) for brand in brands),
                tuple((priority, by_role[role]) for role, priority in jackpots),
            )
            for role, _priority in jackpots:
                by_role[role].allowed_sources.append(source_id)
        return sources

    # -- read-only views ----------------------------------------------------------------------
    @property
    def instance_ids(self) -> dict[str, str]:
        """Role name → instance id."""
        return {instance.role: instance.id for instance in self._instances}

    def players(self) -> dict[str, dict[str, Any]]:
        """Player id → wallet profile plus its ``token``."""
        with self._lock:
            return {
                player.id: {**player.profile(), "token": player.token}
                for player in self._players.values()
            }

    def player_for_token(self, token: str | None) -> Player | None:
        """The wallet player a session token belongs to, if any."""
        if not token:
            return None
        with self._lock:
            return self._player_by_token.get(token)

    # -- REST ---------------------------------------------------------------------------------
    def currencies(self) -> dict[str, Any]:
        """``GET /v1/currencies``."""
        return {
            "last_updated": self._now_ms(),
            "base_currency": BASE_CURRENCY,
            "multipliers": {ccy: _money(rate) for ccy, rate in EXCHANGE_RATES.items()},
        }

    def sources(self, owner_id: str, name: str | None = None) -> list[dict[str, Any]]:
        """``GET /v1/thrillpots/sources``: the owner's sources, ``name`` a case-insensitive
        substring of the source name (⚙)."""
        needle = (name or "").casefold()
        result = []
        with self._lock:
            for source in self._sources.values():
                if owner_id not in source.owners or needle not in source.name.casefold():
                    continue
                jackpots = [
                    {"priority": priority, "owner_id": owner_id, "instance_id": instance.id}
                    for priority, instance in sorted(source.jackpots, key=lambda j: j[0])
                    if owner_id in instance.allowed_brands
                ]
                result.append(
                    {
                        "owner_id": owner_id,
                        "source_name": source.name,
                        "source_id": source.source_id,
                        "jackpots": jackpots,
                    }
                )
        return result

    def jackpot_for_source(
        self,
        source_id: str,
        brand: str,
        *,
        player_id: str | None = None,
        country: str | None = None,
        segments: Sequence[str] = (),
    ) -> dict[str, Any]:
        """``GET /v1/thrillpots/instances/source/{source_id}/brand/{brand}``.

        :raises NotFound: unknown source or brand, or no instance fits.
        """
        bare = bare_brand_id(brand)
        with self._lock:
            source = self._sources.get(source_id)
            if bare is None or source is None or owner_id_of(bare) not in source.owners:
                raise NotFound("source_not_found", f"no source {source_id!r} for brand {brand!r}")
            owner = owner_id_of(bare)
            instance = select_instance(source.jackpots, owner, country, segments)
            if instance is None:
                raise NotFound(
                    "jackpot_not_found", f"no jackpot of source {source_id!r} fits this player"
                )
            optin_status = None
            if player_id:
                known = self._players.get(player_id)
                player_owner = known.owner_id if known else owner
                optin_status = self._optin_status(instance, player_id, player_owner)
            return {
                "id": instance.id,
                "currency": instance.currency,
                "opt_in_required": instance.opt_in_required,
                "contribution_type": {
                    instance.contribution_kind: _money(instance.contribution_value)
                },
                "optin_status": optin_status,
                "pots": [
                    {
                        "id": pot.id,
                        "instance_count": pot.instance_count,
                        "is_progressive": pot.is_progressive,
                        "current_value": _money(pot.current_value),
                        "community_split": _money(pot.community_split),
                    }
                    for pot in instance.pots
                ],
                "timestamp_start": instance.timestamp_start,
                "timestamp_end": instance.timestamp_end,
                "status": instance.status,
            }

    def ticker(self, instance_id: str) -> dict[str, Any]:
        """``GET /v1/thrillpots/instances/{instance_id}/ticker``: money as decimal strings.

        :raises NotFound: unknown instance.
        """
        with self._lock:
            instance = self._instance(instance_id)
            return {
                "id": instance.id,
                "jackpot_type": instance.jackpot_type,
                "currency": instance.currency,
                "pots": [
                    {
                        "id": pot.id,
                        "is_progressive": pot.is_progressive,
                        "current_value": str(pot.current_value),
                        "community_split": str(pot.community_split),
                    }
                    for pot in instance.pots
                ],
                **self._instance_header(instance),
            }

    def _instance(self, instance_id: str) -> Instance:
        instance = self._by_id.get(instance_id)
        if instance is None:
            raise NotFound("instance_not_found", f"no jackpot instance {instance_id!r}")
        return instance

    @staticmethod
    def _instance_header(instance: Instance) -> dict[str, Any]:
        return {
            "allowed_brands": list(instance.allowed_brands),
            "allowed_sources": list(instance.allowed_sources),
            "status": instance.status,
            "timestamp_start": instance.timestamp_start,
            "timestamp_end": instance.timestamp_end,
            "last_updated": instance.last_updated,
        }

    def _optin_status(self, instance: Instance, player_id: str, owner: str) -> dict[str, Any]:
        record = self._optins.get((player_id, instance.id))
        if record is None:
            # A player who never chose: not opted in, nothing contributed.
            record = OptInRecord(False, instance.contribution_value, last_updated=0)
        return {
            "doc_version": "V1",
            "instance_id": instance.id,
            "player_id": player_id,
            "ext_player_id": player_id,
            "player_brand_id": owner,
            "preferred_contribution_value": _money(record.preferred_value),
            "preferred_contribution_currency": instance.currency,
            "contribution_preferences": {instance.currency: str(record.preferred_value)},
            "contribution_count": record.contribution_count,
            "contribution_value": _money(record.contribution_value),
            "pot_contributions": {
                pot.id: {"contribution_count": count, "contribution_value": _money(value)}
                for pot in instance.pots
                for count, value in [record.pot_contributions.get(pot.id, (0, Decimal(0)))]
            },
            "opted_in": record.opted_in,
            "last_updated": record.last_updated,
        }

    # -- CORS rules ---------------------------------------------------------------------------
    def cors_rules(self) -> list[dict[str, str]]:
        """The stored CORS origin rules (``CorsOriginDoc`` list)."""
        with self._lock:
            return [dict(rule) for rule, _ in self._cors.values()]

    def cors_upsert(self, rules: Any) -> list[dict[str, str]]:
        """Add or replace rules by pattern; answer the whole list.

        :raises InvalidInput: malformed rules, unknown match mode, bad regex, too many rules.
        """
        if not isinstance(rules, list) or not rules:
            raise InvalidInput("invalid_body", "cors_origin_list must be a non-empty list")
        compiled = [self._compile_cors_rule(rule) for rule in rules]
        with self._lock:
            patterns = set(self._cors) | {rule["pattern"] for rule, _ in compiled}
            if len(patterns) > MAX_CORS_RULES:
                raise InvalidInput("too_many_rules", f"at most {MAX_CORS_RULES} rules")
            for rule, regex in compiled:
                self._cors[rule["pattern"]] = (rule, regex)
        return self.cors_rules()

    def cors_remove(self, patterns: Any) -> tuple[int, list[dict[str, str]]]:
        """Remove rules by pattern; answer how many went and what remains.

        :raises InvalidInput: when ``patterns`` is not a list of strings.
        """
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise InvalidInput("invalid_body", "cors_origin_list must be a list of patterns")
        with self._lock:
            removed = sum(self._cors.pop(pattern, None) is not None for pattern in set(patterns))
        return removed, self.cors_rules()

    def origin_allowed(self, origin: str) -> bool:
        """Whether a browser ``Origin`` matches one of the stored rules."""
        with self._lock:
            regexes = [regex for _, regex in self._cors.values()]
        return any(regex.fullmatch(origin) for regex in regexes)

    @staticmethod
    def _compile_cors_rule(rule: Any) -> tuple[dict[str, str], re.Pattern[str]]:
        if not isinstance(rule, dict) or set(rule) != {"pattern", "match_mode"}:
            raise InvalidInput(
                "invalid_body", "each rule must be an object with pattern and match_mode"
            )
        pattern, mode = rule["pattern"], rule["match_mode"]
        if not isinstance(pattern, str) or not 0 < len(pattern) <= _MAX_PATTERN_LENGTH:
            raise InvalidInput(
                "invalid_body", f"pattern must be a string of 1 to {_MAX_PATTERN_LENGTH} chars"
            )
        if mode not in CORS_MATCH_MODES:
            raise InvalidInput(
                "invalid_cors_rule", f"match_mode must be one of {', '.join(CORS_MATCH_MODES)}"
            )
        return {"pattern": pattern, "match_mode": mode}, cors_rule_regex(pattern, mode)

    # -- wallet -------------------------------------------------------------------------------
    def add_player(
        self,
        id: str,
        token: str,
        currency: str,
        country: str,
        segments: Sequence[str] = (),
        brand_id: str = "brand1",
    ) -> dict[str, Any]:
        """Register (or replace) a wallet player; answer its profile.

        :raises InvalidInput: a field is malformed.
        :raises Rejected: the token already belongs to another player.
        """
        checks = (
            (
                isinstance(id, str) and _IDENTIFIER.fullmatch(id),
                "id must be 1-128 of [A-Za-z0-9_.:-]",
            ),
            (
                isinstance(token, str) and _TOKEN.fullmatch(token),
                "token must be 1-512 printable chars",
            ),
            (
                isinstance(currency, str) and currency in EXCHANGE_RATES,
                f"currency must be one of {', '.join(EXCHANGE_RATES)}",
            ),
            (
                isinstance(country, str) and _COUNTRY.fullmatch(country),
                "country must be ISO alpha-2",
            ),
            (
                isinstance(brand_id, str) and brand_id in BRAND_IDS,
                f"brand_id must be one of {', '.join(BRAND_IDS)}",
            ),
            (
                isinstance(segments, list | tuple)
                and len(segments) <= _MAX_SEGMENTS
                and all(isinstance(s, str) and _SEGMENT.fullmatch(s) for s in segments),
                f"segments must be a list of at most {_MAX_SEGMENTS} names of [A-Za-z0-9_-]",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise InvalidInput("invalid_player", message)
        player = Player(id, token, currency, country, tuple(segments), brand_id)
        with self._lock:
            holder = self._player_by_token.get(token)
            if holder is not None and holder.id != id:
                raise Rejected("token_in_use", "that token belongs to another player")
            self._register(player)
        return {**player.profile(), "token": token}

    def _register(self, player: Player) -> None:
        previous = self._players.get(player.id)
        if previous is not None:
            self._player_by_token.pop(previous.token, None)
        self._players[player.id] = player
        self._player_by_token[player.token] = player

    # -- player requests ----------------------------------------------------------------------
    def opt_in(
        self,
        player: Player,
        *,
        opt_in: bool,
        instance_id: str | None = None,
        source_id: str | None = None,
        contribution_value: Any = None,
    ) -> Event:
        """Opt ``player`` in to (or out of) an instance, or the instance a source picks for
        them; answer the ``OptInEvent`` targeted at the player.

        :raises NotFound: unknown instance or source.
        :raises Rejected: not eligible, or a contribution outside the allowed range.
        """
        chosen = (
            None
            if contribution_value is None
            else _to_decimal(contribution_value, "contribution_value")
        )
        with self._lock:
            now = self._now_ms()
            instance = self._opt_in_target(player, instance_id, source_id)
            key = (player.id, instance.id)
            record = self._optins.get(key)
            if record is None:
                record = OptInRecord(False, instance.contribution_value, last_updated=now)
                self._optins[key] = record
            if opt_in:
                preferred = instance.contribution_value if chosen is None else chosen
                low, high = allowed_contribution_range(
                    instance.contribution_kind, instance.contribution_value
                )
                if not low <= preferred <= high:
                    raise Rejected(
                        "contribution_out_of_range",
                        f"contribution_value must be between {low} and {high}",
                    )
                record.preferred_value = preferred
            record.opted_in = opt_in
            record.last_updated = now
            data = {
                "instance_id": instance.id,
                "player_id": player.id,
                "ext_player_id": player.id,
                "player_brand_id": player.owner_id,
                "preferred_contribution_value": _money(record.preferred_value),
                "contribution_count": record.contribution_count,
                "contribution_value": _money(record.contribution_value),
                "opted_in": record.opted_in,
                "last_updated": record.last_updated,
            }
            return Event("thrillpots", "OptInEvent", player.brand_id, player.id, data, now)

    def _opt_in_target(
        self, player: Player, instance_id: str | None, source_id: str | None
    ) -> Instance:
        if source_id is not None:
            source = self._sources.get(source_id)
            if source is None:
                raise NotFound("source_not_found", f"no source {source_id!r}")
            instance = select_instance(
                source.jackpots, player.owner_id, player.country, player.segments
            )
            if instance is None:
                raise Rejected(
                    "not_eligible", f"no jackpot of source {source_id!r} for this player"
                )
            return instance
        instance = self._instance(instance_id or "")
        if not is_eligible(instance, player.owner_id, player.country, player.segments):
            raise Rejected("not_eligible", "the player may not play this jackpot")
        if instance.status not in SELECTABLE_STATUSES:
            raise Rejected("not_eligible", f"the jackpot is {instance.status}")
        return instance

    def raffle_tickets(self, player: Player, instance_id: str) -> dict[str, Any]:
        """The ``PlayerRaffleTicketResponse`` data for ``player`` on a raffle.

        :raises NotFound: unknown instance.
        :raises Rejected: not a raffle, or not eligible.
        """
        with self._lock:
            instance = self._instance(instance_id)
            if instance.jackpot_type != "Raffle":
                raise Rejected("not_a_raffle", "that jackpot is not a raffle")
            if not is_eligible(instance, player.owner_id, player.country, player.segments):
                raise Rejected("not_eligible", "the player may not play this raffle")
            record = self._optins.get((player.id, instance.id))
            tickets = record.tickets if record else 0
            return {
                "instance_id": instance.id,
                "brand_id": player.owner_id,
                "player_id": player.id,
                "ext_player_id": player.id,
                "ticket_count": tickets,
                "accumulated_cost": _money(tickets * instance.contribution_value),
                "timestamp_start": instance.timestamp_start,
                "timestamp_end": instance.timestamp_end,
            }

    # -- time passing -------------------------------------------------------------------------
    def tick(self) -> list[Event]:
        """One tick: pots grow, opted-in players contribute, one ``JackpotUpdate`` per active
        instance and allowed brand, random wins, and raffle draws when a period ends."""
        events: list[Event] = []
        with self._lock:
            now = self._now_ms()
            active = [instance for instance in self._instances if instance.status == "Active"]
            for instance in active:
                self._grow(instance, now)
                events += self._for_brands(
                    instance, "JackpotUpdate", self._update_data(instance), now
                )
            for instance in active:
                if instance.jackpot_type == "Raffle":
                    instance.ticks_in_period += 1
                    if instance.ticks_in_period >= RAFFLE_DRAW_TICKS:
                        events += self._raffle_draw(instance, now, None)[1]
                elif self._win_chance and self._win_rng.random() < self._win_chance:
                    pot = self._win_rng.choice(instance.pots)
                    winner = self._pick_winner(instance)
                    if winner is not None:
                        events += self._jackpot_win(instance, pot, winner, now)[1]
        return events

    def _grow(self, instance: Instance, now: int) -> None:
        for pot in instance.pots:
            if pot.is_progressive:
                step = pot.seed_value / 100 * self._growth_rng.randint(10, 100) / 100
                pot.current_value += max(step.quantize(CENT), CENT)
        amount_kind = instance.contribution_kind
        for (_, instance_id), record in self._optins.items():
            if instance_id != instance.id or not record.opted_in:
                continue
            amount = contribution_per_bet(amount_kind, record.preferred_value)
            record.contribution_count += 1
            record.contribution_value += amount
            share = (amount / len(instance.pots)).quantize(_SHARE_PRECISION)
            for pot in instance.pots:
                count, value = record.pot_contributions.get(pot.id, (0, Decimal(0)))
                record.pot_contributions[pot.id] = (count + 1, value + share)
            if instance.jackpot_type == "Raffle":
                record.tickets += 1
        instance.last_updated = now

    def _update_data(self, instance: Instance) -> dict[str, Any]:
        return {
            "id": instance.id,
            "jackpot_type": instance.jackpot_type,
            "currency": instance.currency,
            "pots": [
                {
                    "id": pot.id,
                    "is_progressive": pot.is_progressive,
                    "current_value": _money(pot.current_value),
                }
                for pot in instance.pots
            ],
            **self._instance_header(instance),
        }

    @staticmethod
    def _for_brands(
        instance: Instance, msg_name: str, data: dict[str, Any], now: int
    ) -> list[Event]:
        # A broadcast goes out once per brand the instance allows, with that brand on it.
        return [
            Event("thrillpots", msg_name, owner.rpartition(":")[2], None, data, now)
            for owner in instance.allowed_brands
        ]

    def _multipliers(self, owner: str) -> dict[str, Any]:
        return {
            "brand_id": owner,
            "base_currency": BASE_CURRENCY,
            "multipliers": {ccy: _money(rate) for ccy, rate in EXCHANGE_RATES.items()},
        }

    def _eligible_players(self, instance: Instance) -> list[Player]:
        return [
            player
            for player in sorted(self._players.values(), key=lambda p: p.id)
            if is_eligible(instance, player.owner_id, player.country, player.segments)
        ]

    def _opted_in_players(self, instance: Instance) -> list[Player]:
        return [
            self._players[player_id]
            for (player_id, instance_id), record in sorted(self._optins.items())
            if instance_id == instance.id and record.opted_in and player_id in self._players
        ]

    def _pick_winner(self, instance: Instance) -> Player | None:
        candidates = self._opted_in_players(instance) or self._eligible_players(instance)
        return self._win_rng.choice(candidates) if candidates else None

    def win(
        self, instance_id: str, pot_id: str | None = None, player_id: str | None = None
    ) -> tuple[dict[str, Any], list[Event]]:
        """Make a pot win now (a raffle draws instead); answer the event data and the events.

        :raises NotFound: unknown instance, pot or player.
        :raises Rejected: the instance is not active, or nobody may win it.
        """
        with self._lock:
            now = self._now_ms()
            instance = self._instance(instance_id)
            pot = instance.pots[0] if pot_id is None else instance.pot(pot_id)
            if pot is None:
                raise NotFound("pot_not_found", f"no pot {pot_id!r} in that jackpot")
            winner = None
            if player_id is not None:
                winner = self._players.get(player_id)
                if winner is None:
                    raise NotFound("player_not_found", f"no wallet player {player_id!r}")
            if instance.status != "Active":
                raise Rejected("instance_not_active", f"the jackpot is {instance.status}")
            if instance.jackpot_type == "Raffle":
                return self._raffle_draw(instance, now, winner)
            winner = winner or self._pick_winner(instance)
            if winner is None:
                raise Rejected("no_eligible_player", "no wallet player may win this jackpot")
            return self._jackpot_win(instance, pot, winner, now)

    def _jackpot_win(
        self, instance: Instance, pot: Pot, winner: Player, now: int
    ) -> tuple[dict[str, Any], list[Event]]:
        amount = pot.current_value
        community_pool = (amount * pot.community_split).quantize(CENT)
        members = [p for p in self._opted_in_players(instance) if p.id != winner.id]
        community_winners = []
        if community_pool and members:
            share = (community_pool / len(members)).quantize(CENT)
            community_winners = [
                {
                    "player_id": member.id,
                    "brand_id": member.owner_id,
                    "currency": member.currency,
                    "win_amount": _money(convert(share, instance.currency, member.currency)),
                }
                for member in members
            ]
        data = {
            "brand_id": winner.owner_id,
            "player_id": winner.id,
            "source_id": instance.allowed_sources[0],
            "instance_id": instance.id,
            "jackpot_name": instance.name,
            "jackpot_currency": instance.currency,
            "timestamp": now,
            "win_pot_id": pot.id,
            "win_amount": _money(amount),
            "currency_multipliers": self._multipliers(winner.owner_id),
            "win_withheld": False,
            "community_winners": community_winners,
            "games_in_jackpot": list(instance.allowed_sources),
            "seed": _money(pot.seed_value),
            "metadata": {"simulated": True},
        }
        events = self._for_brands(instance, "WinEvent", data, now)
        if community_pool and not members:
            # Nobody to share the community part with: the platform reports it to the operator.
            error = {
                "instance_id": instance.id,
                "win_pot_id": pot.id,
                "brand_id": winner.owner_id,
                "currency": instance.currency,
                "amount": _money(community_pool),
                "reason": "no_community_members",
                "timestamp": now,
            }
            events.append(
                Event(
                    "thrillpots",
                    "CommunityPayoutErrorEvent",
                    winner.brand_id,
                    None,
                    error,
                    now,
                    True,
                )
            )
        pot.current_value = pot.seed_value
        pot.instance_count += 1
        instance.last_updated = now
        return data, events

    def _raffle_draw(
        self, instance: Instance, now: int, winner: Player | None
    ) -> tuple[dict[str, Any], list[Event]]:
        holders = [
            (self._players[player_id], record.tickets)
            for (player_id, instance_id), record in sorted(self._optins.items())
            if instance_id == instance.id and record.tickets > 0 and player_id in self._players
        ]
        if winner is None and holders:
            ticket = self._win_rng.randrange(sum(tickets for _, tickets in holders))
            for holder, tickets in holders:
                if ticket < tickets:
                    winner = holder
                    break
                ticket -= tickets
        prize = instance.pots[0].current_value
        owner = winner.owner_id if winner else instance.allowed_brands[0]
        winners = []
        if winner is not None:
            winners.append(
                {
                    "player_id": winner.id,
                    "brand_id": winner.owner_id,
                    "currency": winner.currency,
                    "win_amount": _money(convert(prize, instance.currency, winner.currency)),
                }
            )
        data = {
            "brand_id": owner,
            "instance_id": instance.id,
            "jackpot_name": instance.name,
            "jackpot_currency": instance.currency,
            "currency_multipliers": self._multipliers(owner),
            "timestamp": now,
            "winners": winners,
            "win_withheld": not winners,
        }
        events = self._for_brands(instance, "RaffleWinEvent", data, now)
        if not winners:
            error = {
                "instance_id": instance.id,
                "brand_id": owner,
                "reason": "no_tickets",
                "timestamp": now,
            }
            events.append(
                Event(
                    "thrillpots",
                    "RafflePayoutErrorEvent",
                    owner.rpartition(":")[2],
                    None,
                    error,
                    now,
                    True,
                )
            )
        # A new period starts; tickets belong to the period that just drew.
        for (_, instance_id), record in self._optins.items():
            if instance_id == instance.id:
                record.tickets = 0
        instance.ticks_in_period = 0
        instance.timestamp_start = now
        instance.timestamp_end = now + RAFFLE_PERIOD_MS
        instance.last_updated = now
        return data, events
