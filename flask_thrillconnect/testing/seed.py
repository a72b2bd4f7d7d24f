"""The seeded world: the instances, sources, wallet players and CORS rules a simulator starts
with, and how they become domain objects.

The same ``rng`` gives the same instance ids and starting values; timestamps follow ``now``.
Tests and the docs name instances by their *role* (``progressive``, ``raffle``, ``brand2``...).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from decimal import Decimal

from .domain import (
    BRAND_IDS,
    CENT,
    RAFFLE_PERIOD_MS,
    Instance,
    Pot,
    Source,
    WalletPlayer,
    owner_id_of,
)

_DAY_MS = 86_400_000


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

#: The CORS origin rules of a fresh simulator: the example portal's own origins.
DEFAULT_CORS_RULES = (
    {"pattern": "http://127.0.0.1:5000", "match_mode": "Exact"},
    {"pattern": "http://localhost:5000", "match_mode": "Exact"},
)


def build_instances(rng: random.Random, now: int) -> list[Instance]:
    """The seeded instances: ids and head starts drawn from ``rng``, times around ``now`` (ms)."""
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


def build_sources(instances: list[Instance]) -> dict[str, Source]:
    """The seeded sources by id; fills each instance's ``allowed_sources`` on the way."""
    by_role = {instance.role: instance for instance in instances}
    sources = {}
    for source_id, name, brands, jackpots in _SOURCE_SPECS:
        sources[source_id] = Source(
            source_id,
            name,
            tuple(owner_id_of(brand) for brand in brands),
            tuple((priority, by_role[role]) for role, priority in jackpots),
        )
        for role, _priority in jackpots:
            by_role[role].allowed_sources.append(source_id)
    return sources


def wallet_players() -> list[WalletPlayer]:
    """The seeded wallet: ``player_00001``… with tokens ``token_00001``…"""
    return [
        WalletPlayer(f"player_{number}", f"token_{number}", currency, country, segments, brand)
        for number, currency, country, segments, brand in _WALLET
    ]
