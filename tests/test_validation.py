"""Validation of caller/browser values before they reach an upstream URL or message."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import HTTPException

from flask_thrillconnect import validation
from flask_thrillconnect.errors import InvalidIdentifier, ThrillConnectError
from flask_thrillconnect.openapi import openapi_document


@pytest.mark.parametrize(
    "value",
    [
        "egyptian-gold",
        "9d6c1a52-2e0b-4f53-8d5a-0c3f0e1f2a3b",
        "player_00001",
        "thrilltech:brand1",
        "a.b",
        "x" * 128,
        "ÄÖÜ-jäckpot",
        "a@b+c=d~e!",
    ],
)
def test_identifier_accepts_ordinary_ids(value: str) -> None:
    assert validation.identifier(value, "source_id") == value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a/b", "'/'"),
        ("a\\b", "'\\'"),
        ("..", "dot segment"),
        ("a..b", "dot segment"),
        (".", "dot segment"),
        ("?x", "'?'"),
        ("#", "'#'"),
        ("a%2Fb", "'%'"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a\tb", "control"),
        ("a b", "whitespace"),
        ("a\x7fb", "control"),
        ("a\u200bb", "control"),  # zero-width space: a format character
        ("a\u2028b", "control"),  # line separator
        ("abc\n", "control"),  # a trailing newline, which a regex "$" would let through
        ("a\u202eb", "control"),  # right-to-left override
        ("a\ud800b", "control"),  # a lone surrogate, as JSON's "\ud800" gives
        ("a\u3000b", "whitespace"),
        ("x" * 129, "at most 128"),
        ("", "empty"),
    ],
)
def test_identifier_refuses_values_that_could_alter_a_url(value: str, problem: str) -> None:
    with pytest.raises(InvalidIdentifier, match="invalid source_id") as info:
        validation.identifier(value, "source_id")
    assert problem in str(info.value)
    assert info.value.what == "source_id"


@pytest.mark.parametrize("value", [None, 12, b"abc", ["a"], 1.5])
def test_identifier_refuses_non_strings(value: object) -> None:
    with pytest.raises(InvalidIdentifier, match="must be a string"):
        validation.identifier(value, "instance_id")


def test_invalid_identifier_is_a_package_error_and_a_400() -> None:
    with pytest.raises(InvalidIdentifier) as info:
        validation.identifier("a/b", "source_id")
    assert isinstance(info.value, ThrillConnectError)
    assert not isinstance(info.value, HTTPException)  # the family stands apart from werkzeug
    assert info.value.code == 400


def test_invalid_identifier_message_never_echoes_the_value() -> None:
    secret = "s3cr3t-value-" + "y" * 200
    with pytest.raises(InvalidIdentifier) as info:
        validation.identifier(secret, "player_id")
    assert "s3cr3t" not in str(info.value)
    assert "s3cr3t" not in info.value.problem


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("egyptian-gold", "egyptian-gold"),
        ("thrilltech:brand1", "thrilltech%3Abrand1"),
        ("a@b", "a%40b"),
        ("über", "%C3%BCber"),
    ],
)
def test_quote_segment_percent_encodes_one_path_segment(value: str, expected: str) -> None:
    assert validation.quote_segment(value, "brand_id") == expected


def test_quote_segment_validates_before_encoding() -> None:
    with pytest.raises(InvalidIdentifier, match="brand_id"):
        validation.quote_segment("../admin", "brand_id")


@pytest.mark.parametrize("value", ["MT", "GB", "DE", "SE"])
def test_country_code_accepts_iso_alpha2(value: str) -> None:
    assert validation.country_code(value) == value


@pytest.mark.parametrize("value", ["mt", "M", "MTA", "M1", "", " MT", "ÄÖ", None, 49])
def test_country_code_refuses_anything_else(value: object) -> None:
    with pytest.raises(InvalidIdentifier, match="country_code"):
        validation.country_code(value)


@pytest.mark.parametrize("value", ["EUR", "GBP", "SEK"])
def test_currency_code_accepts_three_upper_letters(value: str) -> None:
    assert validation.currency_code(value) == value


@pytest.mark.parametrize("value", ["eur", "EU", "EURO", "E1R", "", None, 978])
def test_currency_code_refuses_anything_else(value: object) -> None:
    with pytest.raises(InvalidIdentifier, match="currency"):
        validation.currency_code(value)


def test_segments_returns_a_tuple_without_duplicates_in_order() -> None:
    assert validation.segments(["vip", "new", "vip"]) == ("vip", "new")


@pytest.mark.parametrize("value", [None, (), []])
def test_segments_accepts_none_and_empty(value: object) -> None:
    assert validation.segments(value) == ()  # type: ignore[arg-type]


def test_segments_refuses_a_bare_string() -> None:
    with pytest.raises(InvalidIdentifier, match="list of segment ids"):
        validation.segments("vip")


@pytest.mark.parametrize("bad", ["a,b", "a/b", "", "x" * 129, 5])
def test_segments_refuses_invalid_segments(bad: object) -> None:
    with pytest.raises(InvalidIdentifier, match="segments"):
        validation.segments(["vip", bad])


def test_segments_is_bounded() -> None:
    assert len(validation.segments([f"s{i}" for i in range(32)])) == 32
    with pytest.raises(InvalidIdentifier, match="at most 32"):
        validation.segments([f"s{i}" for i in range(33)])


def test_segments_stops_reading_an_endless_iterable() -> None:
    def endless():
        while True:
            yield "vip"

    with pytest.raises(InvalidIdentifier, match="at most"):
        validation.segments(endless())


def test_owner_id_joins_bare_ids() -> None:
    assert validation.owner_id("thrilltech", "brand1") == "thrilltech:brand1"


@pytest.mark.parametrize(
    ("operator", "brand", "field"),
    [
        ("thrilltech", "thrilltech:brand1", "brand_id"),
        ("a:b", "brand1", "operator_id"),
        ("thrilltech", "", "brand_id"),
        ("thr/illtech", "brand1", "operator_id"),
    ],
)
def test_owner_id_refuses_joined_or_invalid_parts(operator: str, brand: str, field: str) -> None:
    with pytest.raises(InvalidIdentifier, match=field):
        validation.owner_id(operator, brand)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("Egyptian Gold", "Egyptian Gold"), ("ra", "ra")],
)
def test_source_name_filter_accepts_bounded_printable_text(
    value: str | None, expected: str | None
) -> None:
    assert validation.source_name_filter(value) == expected


@pytest.mark.parametrize("value", ["x" * 129, "a\nb", "a\x00", 5])
def test_source_name_filter_refuses_long_or_unprintable_text(value: object) -> None:
    with pytest.raises(InvalidIdentifier, match="name"):
        validation.source_name_filter(value)


def test_opaque_token_checks_shape_without_echoing() -> None:
    assert validation.opaque_token("token_00001") == "token_00001"
    with pytest.raises(InvalidIdentifier) as info:
        validation.opaque_token("token with space")
    assert "token with" not in str(info.value)
    with pytest.raises(InvalidIdentifier, match="at most"):
        validation.opaque_token("t" * 4097)


def _documented(schema: dict) -> Callable[[object], bool]:
    validator = jsonschema.Draft202012Validator(schema)
    return lambda value: validator.is_valid(value)


_DOCUMENT = openapi_document("/thrillconnect")
_DOCUMENTED_ID = _documented(
    _DOCUMENT["paths"]["/v1/thrillpots/instances/{instance_id}/ticker"]["get"]["parameters"][0][
        "schema"
    ]
)
_DOCUMENTED_NAME = _documented(
    _DOCUMENT["paths"]["/v1/thrillpots/sources"]["get"]["parameters"][0]["schema"]
)
_HOSTILE_TEXT = st.one_of(
    st.text(max_size=140),
    st.text(alphabet=st.sampled_from("a.%/ \n\t\u200b\u202e\u3000\ud800é\U000e0041"), max_size=8),
)


def _beyond_patterns(text: str) -> bool:
    """Lone surrogates and astral format/private/unassigned characters: refused in Python on
    top of the documented patterns (and said so in words in the document)."""
    return any(
        0xD800 <= ord(char) <= 0xDFFF
        or (ord(char) > 0xFFFF and unicodedata.category(char) in ("Cf", "Co", "Cn"))
        for char in text
    )


@settings(max_examples=400, derandomize=True, deadline=None, database=None)
@given(st.one_of(_HOSTILE_TEXT, st.from_regex(validation.IDENTIFIER_PATTERN)))
def test_openapi_states_exactly_the_identifier_rule(text: str) -> None:
    try:
        validation.identifier(text, "instance_id")
        accepted = True
    except InvalidIdentifier:
        accepted = False
    if _beyond_patterns(text):
        assert not accepted
    else:
        assert accepted == _DOCUMENTED_ID(text)


@settings(max_examples=400, derandomize=True, deadline=None, database=None)
@given(st.one_of(_HOSTILE_TEXT, st.from_regex(validation.TEXT_PATTERN)))
def test_openapi_states_exactly_the_name_filter_rule(text: str) -> None:
    try:
        validation.source_name_filter(text)
        accepted = True
    except InvalidIdentifier:
        accepted = False
    if _beyond_patterns(text):
        assert not accepted
    else:
        assert accepted == _DOCUMENTED_NAME(text)


@pytest.mark.parametrize("char", ["\U000e0041", "\U000110bd", "\U000f0000", "\U0010fffd"])
def test_invisible_characters_beyond_the_bmp_are_refused(char: str) -> None:
    with pytest.raises(InvalidIdentifier):
        validation.identifier(f"a{char}b", "source_id")
    with pytest.raises(InvalidIdentifier):
        validation.source_name_filter(f"a{char}b")
