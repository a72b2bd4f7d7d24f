"""Wire models: every documented ThrillConnect shape loads, keeps money exact and dumps back.

The package's own models come from :mod:`flask_thrillconnect.models`; the events and requests
only the tests use, and loaders that know every documented shape, from ``wire_models``.
"""

from __future__ import annotations

import copy
import json
import time
from decimal import Decimal
from typing import Any

import pytest
import wire_models
from marshmallow import ValidationError

from flask_thrillconnect import models
from flask_thrillconnect.errors import InvalidRequest, UnknownCurrency, UpstreamUnavailable
from flask_thrillconnect.limits import MAX_CORS_PATTERN_LENGTH, MAX_CORS_RULES
from flask_thrillconnect.models import (
    ContributionType,
    CorsList,
    CorsListSchema,
    CorsRemovalSchema,
    CorsRemoveBody,
    CorsRuleBody,
    CorsUpsertBody,
    CurrenciesSchema,
    HealthSchema,
    JackpotSchema,
    SourceSchema,
    TickerSchema,
)
from flask_thrillconnect.models.fields import MoneyField

# --------------------------------------------------------------------------------------------
# Examples, copied from the seed page (thrillconnect-service-api.txt) and THRILLCONNECT_API.md
# --------------------------------------------------------------------------------------------

SEED_JACKPOT: dict[str, Any] = {
    "id": "string",
    "currency": "string",
    "opt_in_required": True,
    "contribution_type": {"Fixed": 0.1},
    "optin_status": {
        "doc_version": "V1",
        "instance_id": "string",
        "player_id": "string",
        "ext_player_id": "string",
        "player_brand_id": "string",
        "preferred_contribution_value": 0.1,
        "preferred_contribution_currency": "string",
        "contribution_preferences": {"property1": "string", "property2": "string"},
        "contribution_count": 0,
        "contribution_value": 0.1,
        "pot_contributions": {
            "property1": {"contribution_count": 0, "contribution_value": 0.1},
            "property2": {"contribution_count": 0, "contribution_value": 0.1},
        },
        "opted_in": True,
        "last_updated": 0,
    },
    "pots": [
        {
            "id": "string",
            "instance_count": 0,
            "is_progressive": True,
            "current_value": 0.1,
            "community_split": 0.1,
        }
    ],
    "timestamp_start": 0,
    "timestamp_end": 0,
    "status": "Pending",
}

DOC_JACKPOT: dict[str, Any] = {
    "id": "9d6c…",
    "currency": "EUR",
    "opt_in_required": True,
    "contribution_type": {"Fixed": 0.1},
    "optin_status": {
        "doc_version": "V1",
        "instance_id": "9d6c…",
        "player_id": "player_00001",
        "ext_player_id": "player_00001",
        "player_brand_id": "thrilltech:brand1",
        "preferred_contribution_value": 0.1,
        "preferred_contribution_currency": "EUR",
        "contribution_preferences": {"EUR": "0.1"},
        "contribution_count": 12,
        "contribution_value": 1.2,
        "pot_contributions": {"minor": {"contribution_count": 12, "contribution_value": 0.3}},
        "opted_in": True,
        "last_updated": 1715126401000,
    },
    "pots": [
        {
            "id": "minor",
            "instance_count": 3,
            "is_progressive": True,
            "current_value": 10.53,
            "community_split": 0.1,
        }
    ],
    "timestamp_start": 1715126401000,
    "timestamp_end": None,
    "status": "Active",
}

SEED_SOURCES: list[dict[str, Any]] = [
    {
        "owner_id": "string",
        "source_name": "string",
        "source_id": "string",
        "jackpots": [{"priority": 0, "owner_id": "string", "instance_id": "string"}],
    }
]

DOC_SOURCES: list[dict[str, Any]] = [
    {
        "owner_id": "thrilltech:brand1",
        "source_name": "Egyptian Gold",
        "source_id": "egyptian-gold",
        "jackpots": [{"priority": 0, "owner_id": "thrilltech:brand1", "instance_id": "9d6c…"}],
    }
]

# The seed writes the placeholder "string" for the ticker's money, which is typed as a decimal
# string: the placeholders are replaced by decimal strings, everything else is verbatim.
SEED_TICKER: dict[str, Any] = {
    "id": "string",
    "jackpot_type": "Jackpot",
    "currency": "string",
    "pots": [
        {"id": "string", "is_progressive": True, "current_value": "0.1", "community_split": "0.1"}
    ],
    "allowed_brands": ["string"],
    "allowed_sources": ["string"],
    "status": "Pending",
    "timestamp_start": 0,
    "timestamp_end": 0,
    "last_updated": 0,
}

DOC_TICKER: dict[str, Any] = {
    "id": "9d6c…",
    "jackpot_type": "Jackpot",
    "currency": "EUR",
    "pots": [
        {"id": "minor", "is_progressive": True, "current_value": "10.53", "community_split": "0.1"}
    ],
    "allowed_brands": ["thrilltech:brand1"],
    "allowed_sources": ["egyptian-gold"],
    "status": "Active",
    "timestamp_start": 1715126401000,
    "timestamp_end": None,
    "last_updated": 1715126401000,
}

DOC_CURRENCIES: dict[str, Any] = {
    "last_updated": 1715126401000,
    "base_currency": "EUR",
    "multipliers": {
        "EUR": 1.0,
        "USD": 1.0762,
        "GBP": 0.8592,
        "CAD": 1.4753,
        "PLN": 4.311,
        "NZD": 1.7921,
        "AUD": 1.6303,
        "RON": 4.9753,
        "SGD": 1.4567,
        "SEK": 11.6761,
    },
}

SEED_CORS_LIST: dict[str, Any] = {
    "cors_origin_list": [{"pattern": "string", "match_mode": "string"}]
}
SEED_CORS_REMOVE_REQUEST: dict[str, Any] = {"cors_origin_list": ["string"]}
SEED_CORS_REMOVAL: dict[str, Any] = {
    "removed": 0,
    "cors_origin_list": [{"pattern": "string", "match_mode": "string"}],
}

SEED_SUBSCRIBE: dict[str, Any] = {
    "SubscribeRequest": {"events": [{"source": "thrillpots", "event_type": "*"}]}
}
DOC_OPT_IN: dict[str, Any] = {
    "PlayerOptInRequest": {
        "instance_id": "9d6c…",
        "player_id": "player_00001",
        "brand_id": "thrilltech:brand1",
        "player_country": "MT",
        "opt_in": True,
        "contribution_value": 0.3,
    }
}
DOC_OPT_IN_V2: dict[str, Any] = {
    "PlayerOptInRequestV2": {
        "target": {"type": "source", "id": "egyptian-gold"},
        "operator_id": "thrilltech",
        "player": {"id": "player_00001", "country": "MT", "brand_id": "brand1"},
        "opt_in": True,
        "contribution_value": 0.3,
        "opt_linked": True,
    }
}
DOC_RAFFLE_TICKETS: dict[str, Any] = {
    "PlayerRaffleTicketsRequest": {
        "player_id": "player_00001",
        "instance_id": "…",
        "brand_id": "thrilltech:brand1",
    }
}

MULTIPLIERS: dict[str, Any] = {
    "brand_id": "thrilltech:brand1",
    "base_currency": "EUR",
    "multipliers": {"EUR": 1.0, "GBP": 0.8592},
}

EVENT_DATA: dict[tuple[str, str], dict[str, Any]] = {
    ("thrillpots", "JackpotUpdate"): {
        "id": "9d6c",
        "jackpot_type": "Jackpot",
        "currency": "EUR",
        "pots": [{"id": "minor", "is_progressive": True, "current_value": 10.53}],
        "allowed_brands": ["thrilltech:brand1"],
        "allowed_sources": ["egyptian-gold"],
        "status": "Active",
        "timestamp_start": 1715126401000,
        "timestamp_end": None,
        "last_updated": 1715355347345,
    },
    ("thrillpots", "WinEvent"): {
        "brand_id": "thrilltech:brand1",
        "player_id": "player_00001",
        "source_id": "egyptian-gold",
        "instance_id": "9d6c",
        "jackpot_name": "Egyptian Gold",
        "jackpot_currency": "EUR",
        "timestamp": 1715355347345,
        "win_pot_id": "minor",
        "win_amount": 10.53,
        "currency_multipliers": MULTIPLIERS,
        "win_withheld": False,
        "community_winners": [
            {
                "player_id": "player_00002",
                "brand_id": "thrilltech:brand1",
                "currency": "GBP",
                "win_amount": 0.9,
            }
        ],
        "games_in_jackpot": ["egyptian-gold"],
        "seed": 10.0,
        "metadata": {"simulated": True},
    },
    ("thrillpots", "RaffleWinEvent"): {
        "brand_id": "thrilltech:brand1",
        "instance_id": "r1",
        "jackpot_name": "Sports Raffle",
        "jackpot_currency": "EUR",
        "currency_multipliers": MULTIPLIERS,
        "timestamp": 1715355347345,
        "winners": [
            {
                "player_id": "player_00001",
                "brand_id": "thrilltech:brand1",
                "currency": "EUR",
                "win_amount": 250.5,
            }
        ],
        "win_withheld": False,
    },
    ("thrillpots", "OptInEvent"): {
        "instance_id": "9d6c",
        "player_id": "player_00001",
        "ext_player_id": "player_00001",
        "player_brand_id": "thrilltech:brand1",
        "preferred_contribution_value": 0.3,
        "contribution_count": 0,
        "contribution_value": 0,
        "opted_in": True,
        "last_updated": 1715355347345,
    },
    ("thrillgate", "PlayerBonusAdded"): {
        "id": "b1",
        "promo_id": "promo-7",
        "bonus_instance_id": "bi-1",
        "available_for": [{"provider_id": "netent", "game_ids": ["starburst"]}],
        "bonus_data": {"Freespins": {"count": 10, "bet_value": 0.2}},
        "state": "Available",
        "timestamp_bonus_awarded": 1715355347345,
        "timestamp_bonus_expires": 1715441747345,
        "timestamp_bonus_consumed": None,
    },
    ("thrilldrops", "CampaignDropWin"): {
        "reward_id": "rw-1",
        "reward_valid_from": 1715355347345,
        "reward_valid_to": 1715441747345,
        "name": "Golden drop",
        "currency": "EUR",
        "value": 5.5,
        "image": "https://cdn.example/drop.png",
        "animation": "sparkle",
    },
    ("thrillpots", "PlayerRaffleTicketResponse"): {
        "instance_id": "r1",
        "brand_id": "thrilltech:brand1",
        "player_id": "player_00001",
        "ext_player_id": "player_00001",
        "ticket_count": 3,
        "accumulated_cost": 1.5,
        "timestamp_start": 1715126401000,
        "timestamp_end": 1715212801000,
    },
}

EVENT_MODELS: dict[tuple[str, str], type] = {
    ("thrillpots", "JackpotUpdate"): wire_models.JackpotUpdate,
    ("thrillpots", "WinEvent"): wire_models.WinEvent,
    ("thrillpots", "RaffleWinEvent"): wire_models.RaffleWinEvent,
    ("thrillpots", "OptInEvent"): models.OptInEvent,
    ("thrillgate", "PlayerBonusAdded"): wire_models.PlayerBonus,
    ("thrilldrops", "CampaignDropWin"): wire_models.CampaignDropWin,
    ("thrillpots", "PlayerRaffleTicketResponse"): wire_models.PlayerRaffleTicketResponse,
}


def envelope(source: str, name: str, data: Any, **extra: Any) -> dict[str, Any]:
    return {
        "msg_type": extra.pop("msg_type", "Event"),
        "source": source,
        "msg_name": name,
        "operator_id": "thrilltech",
        "brand_id": "brand1",
        "player_id": extra.pop("player_id", None),
        "data": data,
        "timestamp": 1715355347345,
        **extra,
    }


# --------------------------------------------------------------------------------------------
# REST shapes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("example", [SEED_JACKPOT, DOC_JACKPOT], ids=["seed", "doc"])
def test_jackpot_examples_load_and_round_trip(example: dict[str, Any]) -> None:
    jackpot = JackpotSchema().load(example)
    assert isinstance(jackpot, models.Jackpot)
    assert JackpotSchema().dump(jackpot) == example


def test_jackpot_loads_typed_values() -> None:
    jackpot = JackpotSchema().load(DOC_JACKPOT)
    assert jackpot.contribution_type == ContributionType(kind="Fixed", value=Decimal("0.1"))
    assert jackpot.pots[0].current_value == Decimal("10.53")
    assert jackpot.optin_status is not None
    assert jackpot.optin_status.pot_contributions["minor"].contribution_value == Decimal("0.3")
    assert jackpot.optin_status.contribution_preferences == {"EUR": "0.1"}
    assert jackpot.timestamp_end is None


def test_jackpot_without_player_has_null_optin_status_and_dumps_it() -> None:
    example = {**DOC_JACKPOT, "optin_status": None}
    jackpot = JackpotSchema().load(example)
    assert jackpot.optin_status is None
    assert JackpotSchema().dump(jackpot) == example


def test_jackpot_missing_optin_status_loads_as_none() -> None:
    example = {k: v for k, v in DOC_JACKPOT.items() if k != "optin_status"}
    assert JackpotSchema().load(example).optin_status is None


def test_jackpot_dataclasses_are_frozen() -> None:
    jackpot = JackpotSchema().load(DOC_JACKPOT)
    with pytest.raises(AttributeError):
        jackpot.status = "Paused"  # type: ignore[misc]


def test_percentage_contribution_type_loads_and_dumps() -> None:
    example = {**DOC_JACKPOT, "contribution_type": {"Percentage": 0.01}}
    jackpot = JackpotSchema().load(example)
    assert jackpot.contribution_type == ContributionType("Percentage", Decimal("0.01"))
    assert JackpotSchema().dump(jackpot)["contribution_type"] == {"Percentage": 0.01}


@pytest.mark.parametrize(
    "value",
    [{"Bogus": 0.1}, {"Fixed": 0.1, "Percentage": 0.01}, {}, "Fixed", {"Fixed": "abc"}, None],
)
def test_invalid_contribution_type_is_rejected(value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        JackpotSchema().load({**DOC_JACKPOT, "contribution_type": value})
    assert "contribution_type" in info.value.messages


@pytest.mark.parametrize("status", ["Pending", "Active", "Paused", "Terminated"])
def test_every_jackpot_status_loads(status: str) -> None:
    assert JackpotSchema().load({**DOC_JACKPOT, "status": status}).status == status


@pytest.mark.parametrize("status", ["active", "Closed", "", 1])
def test_unknown_jackpot_status_is_rejected(status: Any) -> None:
    with pytest.raises(ValidationError) as info:
        JackpotSchema().load({**DOC_JACKPOT, "status": status})
    assert "status" in info.value.messages


def test_unknown_fields_are_dropped_at_every_level() -> None:
    example = copy.deepcopy(DOC_JACKPOT)
    example["new_top_level"] = 1
    example["pots"][0]["new_pot_field"] = "x"
    example["optin_status"]["new_optin_field"] = True
    example["optin_status"]["pot_contributions"]["minor"]["extra"] = 1
    jackpot = JackpotSchema().load(example)
    assert JackpotSchema().dump(jackpot) == DOC_JACKPOT


@pytest.mark.parametrize("example", [SEED_SOURCES, DOC_SOURCES], ids=["seed", "doc"])
def test_sources_examples_load_and_round_trip(example: list[dict[str, Any]]) -> None:
    sources = SourceSchema(many=True).load(example)
    assert all(isinstance(source, models.Source) for source in sources)
    assert SourceSchema(many=True).dump(sources) == example


def test_source_jackpots_load_as_a_tuple() -> None:
    (source,) = SourceSchema(many=True).load(DOC_SOURCES)
    assert source.jackpots == (models.SourceJackpot(0, "thrilltech:brand1", "9d6c…"),)


@pytest.mark.parametrize("example", [SEED_TICKER, DOC_TICKER], ids=["seed", "doc"])
def test_ticker_examples_load_and_round_trip(example: dict[str, Any]) -> None:
    ticker = TickerSchema().load(example)
    assert isinstance(ticker, models.Ticker)
    assert TickerSchema().dump(ticker) == example


def test_ticker_money_loads_from_decimal_strings_and_dumps_as_strings() -> None:
    ticker = TickerSchema().load(DOC_TICKER)
    assert ticker.pots[0].current_value == Decimal("10.53")
    assert ticker.pots[0].community_split == Decimal("0.1")
    dumped = TickerSchema().dump(ticker)["pots"][0]
    assert dumped["current_value"] == "10.53"
    assert dumped["community_split"] == "0.1"


def test_ticker_keeps_trailing_zeros_of_decimal_strings() -> None:
    example = copy.deepcopy(DOC_TICKER)
    example["pots"][0]["current_value"] = "10000.00"
    assert TickerSchema().dump(TickerSchema().load(example))["pots"][0]["current_value"] == (
        "10000.00"
    )


def test_seed_ticker_placeholder_is_not_a_decimal() -> None:
    example = copy.deepcopy(SEED_TICKER)
    example["pots"][0]["current_value"] = "string"
    with pytest.raises(ValidationError):
        TickerSchema().load(example)


@pytest.mark.parametrize("jackpot_type", ["Lottery", "jackpot", None])
def test_unknown_jackpot_type_is_rejected(jackpot_type: Any) -> None:
    with pytest.raises(ValidationError) as info:
        TickerSchema().load({**DOC_TICKER, "jackpot_type": jackpot_type})
    assert "jackpot_type" in info.value.messages


def test_raffle_ticker_loads() -> None:
    assert TickerSchema().load({**DOC_TICKER, "jackpot_type": "Raffle"}).jackpot_type == "Raffle"


def test_currencies_example_loads_and_round_trips() -> None:
    currencies = CurrenciesSchema().load(DOC_CURRENCIES)
    assert currencies.multipliers["SEK"] == Decimal("11.6761")
    assert currencies.multipliers["EUR"] == Decimal("1.0")
    assert CurrenciesSchema().dump(currencies) == DOC_CURRENCIES


def test_currencies_convert_goes_through_the_base_currency() -> None:
    currencies = CurrenciesSchema().load(DOC_CURRENCIES)
    assert currencies.convert(Decimal("100"), "EUR", "USD") == Decimal("107.62")
    assert currencies.convert(Decimal("107.62"), "USD", "EUR") == Decimal("100")
    gbp_to_sek = currencies.convert(Decimal("10"), "GBP", "SEK")
    assert gbp_to_sek.quantize(Decimal("0.01")) == Decimal("135.90")
    assert currencies.convert(Decimal("5.5"), "GBP", "GBP") == Decimal("5.5")


def test_currencies_convert_refuses_unknown_currencies() -> None:
    currencies = CurrenciesSchema().load(DOC_CURRENCIES)
    with pytest.raises(UnknownCurrency):
        currencies.convert(Decimal(1), "EUR", "XXX")


def test_currencies_refuse_non_positive_multipliers() -> None:
    with pytest.raises(ValidationError):
        CurrenciesSchema().load({**DOC_CURRENCIES, "multipliers": {"EUR": 1.0, "USD": 0}})


def test_health_loads() -> None:
    assert HealthSchema().load({"version": "1.2.3", "extra": 1}) == models.Health("1.2.3")


# --------------------------------------------------------------------------------------------
# Money
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (10.53, Decimal("10.53")),
        (0.1, Decimal("0.1")),
        (1.1, Decimal("1.1")),
        (10000.0, Decimal("10000.0")),
        (12, Decimal("12")),
        ("10.53", Decimal("10.53")),
    ],
)
def test_money_loads_exactly_from_numbers_and_strings(wire: Any, expected: Decimal) -> None:
    example = copy.deepcopy(DOC_JACKPOT)
    example["pots"][0]["current_value"] = wire
    value = JackpotSchema().load(example).pots[0].current_value
    assert isinstance(value, Decimal)
    assert value == expected
    assert str(value) == str(expected)  # no binary float noise like 10.5299999…


def test_money_from_json_text_has_no_float_noise() -> None:
    example = json.loads(json.dumps(DOC_JACKPOT).replace("10.53", "0.30000000000000004"))
    assert JackpotSchema().load(example).pots[0].current_value == Decimal("0.30000000000000004")
    ticker = json.loads('{"id":"x","current_value":0.29}')
    assert MoneyField().deserialize(ticker["current_value"]) == Decimal("0.29")


def test_money_dumps_as_json_numbers() -> None:
    jackpot = JackpotSchema().load(DOC_JACKPOT)
    text = json.dumps(JackpotSchema().dump(jackpot))
    assert '"current_value": 10.53' in text
    assert '"contribution_value": 1.2' in text


@pytest.mark.parametrize("wire", [True, "abc", float("nan"), float("inf"), None, [1]])
def test_money_refuses_non_numbers(wire: Any) -> None:
    example = copy.deepcopy(DOC_JACKPOT)
    example["pots"][0]["current_value"] = wire
    with pytest.raises(ValidationError):
        JackpotSchema().load(example)


def test_contribution_range_of_fixed_is_one_to_ten_times() -> None:
    fixed = ContributionType("Fixed", Decimal("0.1"))
    assert models.contribution_range(fixed) == (Decimal("0.1"), Decimal("1.0"))


def test_contribution_range_of_percentage_is_one_to_ten_percent() -> None:
    percentage = ContributionType("Percentage", Decimal("0.01"))
    assert models.contribution_range(percentage) == (Decimal("0.01"), Decimal("0.10"))


# --------------------------------------------------------------------------------------------
# CORS
# --------------------------------------------------------------------------------------------


def test_seed_cors_list_loads_and_round_trips() -> None:
    cors = CorsListSchema().load(SEED_CORS_LIST)
    assert cors == CorsList((models.CorsOrigin("string", "string"),))
    assert CorsListSchema().dump(cors) == SEED_CORS_LIST


def test_seed_cors_removal_answer_loads_and_round_trips() -> None:
    removal = CorsRemovalSchema().load(SEED_CORS_REMOVAL)
    assert removal.removed == 0
    assert CorsRemovalSchema().dump(removal) == SEED_CORS_REMOVAL


def test_seed_cors_remove_request_loads_as_itself() -> None:
    assert CorsRemoveBody().load(SEED_CORS_REMOVE_REQUEST) == SEED_CORS_REMOVE_REQUEST


def test_cors_answers_load_rules_newer_than_this_release() -> None:
    listed = {"cors_origin_list": [{"pattern": "(?i)x" * 200, "match_mode": "Glob"}]}
    assert CorsListSchema().dump(CorsListSchema().load(listed)) == listed


@pytest.mark.parametrize(
    "rule",
    [
        {"pattern": "https://casino.example", "match_mode": "Exact"},
        {"pattern": "https://*.casino.example", "match_mode": "Wildcard"},
        {"pattern": r"https://[a-z]+\.casino\.example", "match_mode": "Regex"},
        {"pattern": "x" * MAX_CORS_PATTERN_LENGTH, "match_mode": "Exact"},
    ],
)
def test_cors_rules_of_every_match_mode_validate(rule: dict[str, str]) -> None:
    assert CorsUpsertBody().load({"cors_origin_list": [rule]}) == {"cors_origin_list": [rule]}
    assert CorsRuleBody().load(rule) == rule


@pytest.mark.parametrize(
    "rule",
    [
        {"pattern": "https://casino.example", "match_mode": "Prefix"},
        {"pattern": "https://casino.example", "match_mode": "string"},
        {"pattern": "https://(unclosed", "match_mode": "Regex"},
        {"pattern": "", "match_mode": "Exact"},
        {"pattern": "https://a b", "match_mode": "Exact"},
        {"pattern": "https://a\u3000b", "match_mode": "Exact"},
        {"pattern": "x" * (MAX_CORS_PATTERN_LENGTH + 1), "match_mode": "Exact"},
        {"match_mode": "Exact"},
        {"pattern": "https://casino.example", "match_mode": "Exact", "player_id": "p"},
    ],
)
def test_invalid_cors_rules_are_rejected_for_requests(rule: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        CorsUpsertBody().load({"cors_origin_list": [rule]})
    with pytest.raises(ValidationError):
        CorsRuleBody().load(rule)


@pytest.mark.parametrize("count", [0, MAX_CORS_RULES + 1])
def test_cors_bodies_hold_one_to_the_limit_of_rules(count: int) -> None:
    rule = {"pattern": "https://casino.example", "match_mode": "Exact"}
    with pytest.raises(ValidationError):
        CorsUpsertBody().load({"cors_origin_list": [rule] * count})
    with pytest.raises(ValidationError):
        CorsRemoveBody().load({"cors_origin_list": [rule["pattern"]] * count})


# --------------------------------------------------------------------------------------------
# WebSocket envelopes and events
# --------------------------------------------------------------------------------------------


def test_documented_envelope_loads_with_its_jackpot_update() -> None:
    data = EVENT_DATA[("thrillpots", "JackpotUpdate")]
    loaded = wire_models.load_envelope(json.dumps(envelope("thrillpots", "JackpotUpdate", data)))
    assert loaded.msg_type == "Event"
    assert loaded.operator_id == "thrilltech"
    assert loaded.brand_id == "brand1"
    assert loaded.player_id is None
    assert loaded.timestamp == 1715355347345
    assert isinstance(loaded.data, wire_models.JackpotUpdate)
    assert loaded.data.pots[0].current_value == Decimal("10.53")


@pytest.mark.parametrize("key", list(EVENT_DATA), ids=lambda key: "/".join(key))
def test_every_event_data_shape_loads_and_round_trips(key: tuple[str, str]) -> None:
    source, name = key
    msg_type = "Message" if name == "PlayerRaffleTicketResponse" else "Event"
    message = envelope(source, name, EVENT_DATA[key], msg_type=msg_type, player_id="player_00001")
    loaded = wire_models.load_envelope(message)
    assert isinstance(loaded.data, EVENT_MODELS[key])
    assert wire_models.dump_envelope(loaded) == message


@pytest.mark.parametrize(
    "name",
    [
        "PlayerBonusAdded",
        "PlayerBonusUpdated",
        "PlayerBonusConsumed",
        "PlayerBonusExpired",
        "PlayerBonusRemoved",
    ],
)
def test_every_thrillgate_bonus_event_loads_as_player_bonus(name: str) -> None:
    data = EVENT_DATA[("thrillgate", "PlayerBonusAdded")]
    loaded = wire_models.load_envelope(envelope("thrillgate", name, data))
    assert isinstance(loaded.data, wire_models.PlayerBonus)
    assert loaded.data.available_for[0].game_ids == ("starburst",)


def test_win_event_loads_its_multipliers_and_community_winners() -> None:
    data = EVENT_DATA[("thrillpots", "WinEvent")]
    win = wire_models.load_envelope(envelope("thrillpots", "WinEvent", data)).data
    assert win.win_amount == Decimal("10.53")
    assert win.currency_multipliers.multipliers["GBP"] == Decimal("0.8592")
    assert win.community_winners[0].win_amount == Decimal("0.9")
    assert win.seed == Decimal("10.0")


@pytest.mark.parametrize("name", ["CommunityPayoutErrorEvent", "RafflePayoutErrorEvent"])
def test_payout_error_events_keep_their_data_as_a_dict(name: str) -> None:
    data = {"instance_id": "9d6c", "reason": "no_community_members", "amount": 1.05}
    loaded = wire_models.load_envelope(envelope("thrillpots", name, data))
    assert loaded.data == data


def test_error_envelope_loads_code_and_message() -> None:
    message = envelope(
        "thrillpots",
        "PlayerOptInRequest",
        {"code": "contribution_out_of_range", "message": "between 0.1 and 1.0"},
        msg_type="Error",
    )
    loaded = wire_models.load_envelope(message)
    assert loaded.data == models.ErrorData("contribution_out_of_range", "between 0.1 and 1.0")
    assert wire_models.dump_envelope(loaded) == message


def test_unknown_events_keep_their_raw_data() -> None:
    data = {"anything": [1, 2], "nested": {"x": "y"}}
    loaded = wire_models.load_envelope(envelope("thrillfuture", "BrandNewEvent", data))
    assert loaded.data == data
    assert wire_models.dump_envelope(loaded)["data"] == data


def test_envelope_accepts_bytes_and_drops_unknown_fields() -> None:
    message = envelope("thrillpots", "Unknown", {}, surprise=True)
    loaded = wire_models.load_envelope(json.dumps(message).encode())
    assert "surprise" not in wire_models.dump_envelope(loaded)


def test_relay_envelope_keeps_its_seq_and_omits_missing_ids() -> None:
    message = {
        "msg_type": "Message",
        "source": "relay",
        "msg_name": "RelayStatus",
        "player_id": None,
        "data": {"upstream": "connected"},
        "seq": 7,
    }
    loaded = wire_models.load_envelope(message)
    assert loaded.seq == 7
    assert wire_models.dump_envelope(loaded) == message


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        '{"msg_type": "Event"}',
        json.dumps(envelope("thrillpots", "JackpotUpdate", {"id": "only"})),
        json.dumps(envelope("thrillpots", "X", {}, msg_type="Broadcast")),
        '{"msg_type": "Event", "source": "s", "msg_name": "n", "data": NaN}',
    ],
    ids=["not-json", "array", "missing-fields", "bad-data", "bad-msg-type", "nan"],
)
def test_invalid_envelopes_raise_upstream_unavailable(raw: str) -> None:
    with pytest.raises(UpstreamUnavailable, match="invalid WebSocket message"):
        wire_models.load_envelope(raw)


# --------------------------------------------------------------------------------------------
# Client requests
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("example", "model"),
    [
        (SEED_SUBSCRIBE, models.SubscribeRequest),
        (DOC_OPT_IN, models.PlayerOptInRequest),
        (DOC_OPT_IN_V2, wire_models.PlayerOptInRequestV2),
        (DOC_RAFFLE_TICKETS, wire_models.PlayerRaffleTicketsRequest),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else next(iter(value)),
)
def test_documented_client_requests_load_and_dump_to_the_exact_wire_object(
    example: dict[str, Any], model: type
) -> None:
    name, request = wire_models.load_client_request(json.dumps(example))
    assert name == next(iter(example))
    assert isinstance(request, model)
    assert wire_models.dump_client_request(request) == example
    assert json.loads(wire_models.client_request_json(request)) == example


def test_subscribe_request_is_built_from_dataclasses() -> None:
    request = models.SubscribeRequest(
        (
            models.EventSubscription("thrillpots", "*"),
            models.EventSubscription("thrilldrops", "X"),
        )
    )
    assert wire_models.dump_client_request(request) == {
        "SubscribeRequest": {
            "events": [
                {"source": "thrillpots", "event_type": "*"},
                {"source": "thrilldrops", "event_type": "X"},
            ]
        }
    }


def test_opt_in_without_contribution_value_omits_it_on_the_wire() -> None:
    body = dict(DOC_OPT_IN["PlayerOptInRequest"])
    del body["contribution_value"]
    _, request = wire_models.load_client_request({"PlayerOptInRequest": body})
    assert request.contribution_value is None
    assert wire_models.dump_client_request(request) == {"PlayerOptInRequest": body}


def test_opt_in_contribution_value_is_an_exact_decimal() -> None:
    _, request = wire_models.load_client_request(json.dumps(DOC_OPT_IN))
    assert request.contribution_value == Decimal("0.3")


def _opt_in_with(**changes: Any) -> dict[str, Any]:
    body = {**DOC_OPT_IN["PlayerOptInRequest"], **changes}
    return {"PlayerOptInRequest": body}


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (_opt_in_with(instance_id="a/b"), "instance_id"),
        (_opt_in_with(player_id="../x"), "player_id"),
        (_opt_in_with(player_id="x" * 129), "player_id"),
        (_opt_in_with(brand_id="a b"), "brand_id"),
        (_opt_in_with(player_country="mt"), "player_country"),
        (_opt_in_with(opt_in=1), "opt_in"),
        (_opt_in_with(opt_in="true"), "opt_in"),
        (_opt_in_with(contribution_value=-1), "contribution_value"),
        (_opt_in_with(contribution_value=0), "contribution_value"),
        (_opt_in_with(contribution_value=10**9), "contribution_value"),
        (_opt_in_with(contribution_value="lots"), "contribution_value"),
        (_opt_in_with(player_id=None), "player_id"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_invalid_opt_in_requests_are_refused_naming_the_field(
    message: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest, match="invalid PlayerOptInRequest") as info:
        wire_models.load_client_request(message)
    assert field in str(info.value)
    assert info.value.code == 400


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("not json", "not valid JSON"),
        ("x" * 20000, "too large"),
        ("[]", "exactly one request key"),
        ("{}", "exactly one request key"),
        (json.dumps({**SEED_SUBSCRIBE, **DOC_OPT_IN}), "exactly one request key"),
        ('{"UnsubscribeRequest": {}}', "unknown request"),
        ('{"SubscribeRequest": []}', "must be a JSON object"),
        ('{"SubscribeRequest": {"events": []}}', "events"),
        ('{"SubscribeRequest": {"events": [{"source": "casino", "event_type": "*"}]}}', "source"),
        (
            '{"SubscribeRequest": {"events": [{"source": "thrillpots", "event_type": "a/b"}]}}',
            "event_type",
        ),
        (
            json.dumps(
                {"SubscribeRequest": {"events": [{"source": "thrillpots", "event_type": "*"}] * 33}}
            ),
            "events",
        ),
        (
            json.dumps(
                {
                    "PlayerOptInRequestV2": {
                        **DOC_OPT_IN_V2["PlayerOptInRequestV2"],
                        "target": {"type": "game", "id": "x"},
                    }
                }
            ),
            "target.type",
        ),
        ('{"PlayerRaffleTicketsRequest": {"player_id": "p"}}', "instance_id"),
    ],
)
def test_invalid_client_messages_are_refused_clearly(raw: str, problem: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        wire_models.load_client_request(raw)
    assert problem in str(info.value)


def test_refused_client_message_does_not_echo_the_value() -> None:
    with pytest.raises(InvalidRequest) as info:
        wire_models.load_client_request(_opt_in_with(player_id="evil\x00<script>" + "z" * 200))
    assert "<script>" not in str(info.value)
    assert "zzz" not in str(info.value)


@pytest.mark.parametrize(
    "example", [DOC_OPT_IN_V2, DOC_RAFFLE_TICKETS], ids=lambda e: next(iter(e))
)
def test_the_relay_takes_only_the_requests_it_acts_on(example: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match="unknown request"):
        models.load_client_request(json.dumps(example))


def test_the_package_loads_only_the_events_it_reads() -> None:
    data = EVENT_DATA[("thrillpots", "WinEvent")]
    assert models.load_envelope(envelope("thrillpots", "WinEvent", data)).data == data
    data = EVENT_DATA[("thrillpots", "OptInEvent")]
    loaded = models.load_envelope(envelope("thrillpots", "OptInEvent", data)).data
    assert isinstance(loaded, models.OptInEvent)


def test_subscribe_request_json_is_the_wire_request() -> None:
    events = [
        {"source": "thrillpots", "event_type": "*"},
        {"source": "thrillgate", "event_type": "*"},
    ]
    text = models.subscribe_request_json(events)
    assert json.loads(text) == {"SubscribeRequest": {"events": events}}
    assert " " not in text  # compact


def test_subscribe_request_json_refuses_what_a_browser_could_not_ask() -> None:
    with pytest.raises(InvalidRequest):
        models.subscribe_request_json([{"source": "casino", "event_type": "*"}])


@pytest.mark.parametrize(
    ("contribution", "wire"),
    [(None, None), (Decimal("0.3"), 0.3), (Decimal("2"), 2), (Decimal("2.0"), 2.0)],
)
def test_player_opt_in_request_json_is_the_documented_request(
    contribution: Decimal | None, wire: Any
) -> None:
    text = models.player_opt_in_request_json(
        instance_id="9d6c…",
        player_id="player_00001",
        brand_id="thrilltech:brand1",
        player_country="MT",
        opt_in=True,
        contribution_value=contribution,
    )
    expected = dict(DOC_OPT_IN["PlayerOptInRequest"])
    del expected["contribution_value"]
    if wire is not None:
        expected["contribution_value"] = wire
    assert json.loads(text) == {"PlayerOptInRequest": expected}
    if wire is not None:
        assert f'"contribution_value":{wire}' in text  # 2 stays 2, 2.0 stays 2.0
    # What the portal sends loads again as a request the relay itself takes.
    _, request = models.load_client_request(text)
    assert request.contribution_value == contribution


def test_one_json_encoder_writes_decimals_as_they_were_written() -> None:
    text = models.to_json({"a": Decimal("10.53"), "b": Decimal("12"), "c": [Decimal("10.0")]})
    assert text == '{"a":10.53,"b":12,"c":[10.0]}'
    assert models.to_json({"name": "Jäckpot"}) == '{"name":"Jäckpot"}'


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("NaN", "NaN and Infinity"),
        ('{"a": -Infinity}', "NaN and Infinity"),
        (b"\xff", "can't decode"),
        ("x" * 300_001, "larger than"),
        ("{", "Expecting"),
    ],
    ids=["deep", "nan", "infinity", "not-utf8", "too-large", "not-json"],
)
def test_parse_json_has_one_error_for_every_bad_text(raw: str | bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        models.parse_json(raw, limit=300_000)


# --------------------------------------------------------------------------------------------
# The simulator's real events
# --------------------------------------------------------------------------------------------


def _subscribe_all(connection: Any, instance_id: str) -> None:
    """Subscribe to every source; wait until the server has processed it.

    There is no acknowledgement, so a raffle-ticket request sent after the subscription is
    used as a barrier: its answer (or Error) arrives after the subscription is in place.
    """
    events = [{"source": s, "event_type": "*"} for s in ("thrillpots", "thrillgate")]
    connection.send(json.dumps({"SubscribeRequest": {"events": events}}))
    barrier = {"player_id": "player_00001", "instance_id": instance_id, "brand_id": "x:y"}
    connection.send(json.dumps({"PlayerRaffleTicketsRequest": barrier}))
    json.loads(connection.recv(timeout=5))


def test_simulator_events_load_and_round_trip(thrillconnect_sim: Any) -> None:
    from websockets.sync.client import connect

    sim = thrillconnect_sim
    service_url = f"{sim.ws_url}/v1/events/service?token={sim.service_token}"
    player_url = f"{sim.ws_url}/v1/events/thrilltech/brand1?token=token_00001&currency=EUR"
    expected = {"JackpotUpdate", "WinEvent", "RaffleWinEvent", "OptInEvent", "PlayerOptInRequest"}
    seen: dict[str, type] = {}
    with (
        connect(service_url, open_timeout=5) as service,
        connect(player_url, open_timeout=5) as player,
    ):
        _subscribe_all(service, sim.instance_ids["raffle"])
        _subscribe_all(player, sim.instance_ids["raffle"])
        opt_in = {
            "instance_id": sim.instance_ids["progressive"],
            "player_id": "player_00001",
            "brand_id": "thrilltech:brand1",
            "player_country": "MT",
            "opt_in": True,
        }
        player.send(json.dumps({"PlayerOptInRequest": {**opt_in, "contribution_value": 0.3}}))
        player.send(json.dumps({"PlayerOptInRequest": {**opt_in, "contribution_value": 999}}))
        sim.tick(1)
        sim.win(sim.instance_ids["progressive"], "minor", "player_00002")
        sim.win(sim.instance_ids["raffle"])
        deadline = time.monotonic() + 10
        for connection in (service, player):
            while not expected <= set(seen) and time.monotonic() < deadline:
                try:
                    raw = connection.recv(timeout=0.5)
                except TimeoutError:
                    break
                loaded = wire_models.load_envelope(raw)
                assert wire_models.dump_envelope(loaded) == json.loads(raw), loaded.msg_name
                seen[loaded.msg_name] = type(loaded.data)
    assert expected <= set(seen)
    assert seen["JackpotUpdate"] is wire_models.JackpotUpdate
    assert seen["WinEvent"] is wire_models.WinEvent
    assert seen["RaffleWinEvent"] is wire_models.RaffleWinEvent
    assert seen["OptInEvent"] is models.OptInEvent
    assert seen["PlayerOptInRequest"] is models.ErrorData
