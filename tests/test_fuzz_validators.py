"""Property tests: every validator of browser input answers a value or its own error.

For anything a browser can send (any text or bytes on the relay, any JSON value in a REST body,
any value reaching :mod:`flask_thrillconnect.validation`) a validator either returns something
valid by its documented rule or raises its documented error, never another exception. What is
accepted is checked against the rule as the docs state it (and, for REST bodies, against
``/openapi.json``), not against the implementation's own regular expressions.

Bounded and derandomized: CI and a laptop run the same examples; no example database is kept.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import unicodedata
import urllib.parse
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import hypothesis.core
import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.vendor import pretty
from marshmallow import ValidationError

from flask_thrillconnect import limits, models, validation
from flask_thrillconnect.errors import InvalidIdentifier, InvalidRequest
from flask_thrillconnect.models import CorsRemoveBody, CorsUpsertBody, OptInBody
from flask_thrillconnect.openapi import openapi_document

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    # Long texts and deep values are the point here, not a sign of a slow strategy.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Control, format (invisible), line/paragraph separator characters and lone surrogates: what
#: the docs say no id, name filter or CORS pattern may contain.
INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: ... and ids and tokens take no space characters either.
INVISIBLE_OR_SPACE = INVISIBLE | {"Zs"}
MAX_MESSAGE_LENGTH = 400
#: The FutureWarning of ``re`` about set syntax that may change meaning in a later Python.
REGEX_SET_WARNING = r"ignore:Possible (nested set|set \w+) at position:FutureWarning"
DEEP = 2000


@pytest.fixture(autouse=True)
def _show_failing_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    # Importing schemathesis (its pytest plugin loads in every run) swaps Hypothesis's printer
    # for one that prints nothing, which speeds up schemathesis' own runs; without this, a
    # failure here would report ``value=,`` instead of the input that broke the property.
    monkeypatch.setattr(
        hypothesis.core, "RepresentationPrinter", pretty.RepresentationPrinter, raising=False
    )


def _has(categories: frozenset[str], text: str) -> bool:
    """Whether ``text`` holds a character of one of the Unicode general ``categories``."""
    return any(unicodedata.category(char) in categories for char in text)


def _short_and_printable(error: Exception) -> None:
    """Error messages say what is wrong without echoing long or invisible input."""
    message = str(error)
    assert len(message) <= MAX_MESSAGE_LENGTH, f"message of {len(message)} characters"
    assert message.isprintable(), f"message with invisible characters: {message[:80]!r}"


def _check_identifier(value: Any) -> None:
    assert isinstance(value, str)
    assert 1 <= len(value) <= validation.MAX_IDENTIFIER_LENGTH
    # The docstring: no whitespace, control, format or separator characters.
    assert not _has(INVISIBLE_OR_SPACE, value), f"id with invisible characters: {value!r}"
    assert not any(char in value for char in "/\\?#%")
    assert value != "."
    assert ".." not in value


# -- strategies -------------------------------------------------------------------------------

#: One character that a validator should think twice about.
SPECIAL_CHAR = st.one_of(
    st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Zs"]),
    st.sampled_from(["\ud800", "\udfff", "\udc80"]),  # lone surrogates, as JSON "\ud800" gives
    st.sampled_from(list("/\\?#%.,: \t\n")),
)
ORDINARY_CHAR = st.one_of(st.characters(categories=["L", "N"]), st.sampled_from(list("-_.:@+~!")))
EDGE_TEXT = st.sampled_from(
    [
        "",
        ".",
        "..",
        "a..b",
        "*",
        "x" * 128,
        "x" * 129,
        "x" * 256,
        "x" * 257,
        "x" * 4096,
        "x" * 4097,
        "y" * 100_000,
        "\ud800",
        "a\ud800b",
        "NaN",
        "Infinity",
        "1e400",
        "abc\n",
        "a\u202eb",
        "a\U000e0041b",  # a TAG character: invisible
        "thrilltech:brand1",
    ]
)
TEXT = st.one_of(
    st.text(ORDINARY_CHAR, min_size=1, max_size=40),
    # An ordinary id with one special character somewhere inside.
    st.builds(
        lambda head, char, tail: head + char + tail,
        st.text(ORDINARY_CHAR, max_size=8),
        SPECIAL_CHAR,
        st.text(ORDINARY_CHAR, max_size=8),
    ),
    st.text(st.one_of(ORDINARY_CHAR, SPECIAL_CHAR), max_size=140),
    st.text(),
    EDGE_TEXT,
)
NUMBER = st.one_of(
    st.integers(),
    st.floats(),  # NaN and ±inf included: json.loads gives inf for 1e400
    st.sampled_from([0, -0.0, 5e-324, 1e-400, 1e308, 10**400, -(10**400), 1_000_000, 1_000_000.5]),
)
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON = st.recursive(
    SCALAR,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(TEXT, children, max_size=5)
    ),
    max_leaves=25,
)
#: A value of the wrong JSON type, where type confusion (1 for true, "1" for 1) could slip by.
WRONG_TYPE = st.sampled_from(
    [None, True, False, 0, 1, -1, 0.0, 1.0, "", "true", "1", "0.5", [], {}, ["x"], {"x": 1}]
)


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` five times in six: objects of several fields are then often valid as a whole."""
    # Not st.one_of(valid, valid, ...): Hypothesis does not weight repeated branches that way.
    return st.integers(min_value=0, max_value=5).flatmap(lambda n: other if n == 5 else valid)


VALID_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_:-]{0,40}", fullmatch=True)
ID = mostly(VALID_ID, st.one_of(TEXT, WRONG_TYPE))
BOOL = mostly(st.booleans(), WRONG_TYPE)
COUNTRY = mostly(st.from_regex(r"[A-Z]{2}", fullmatch=True), st.one_of(TEXT, WRONG_TYPE))
CONTRIBUTION = st.one_of(
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000000"), places=2).map(float),
    st.floats(min_value=1e-12, max_value=1e6),
    NUMBER,
    WRONG_TYPE,
)
#: Decimal strings, which the relay's money fields take: tiny and huge exponents included.
DECIMAL_TEXT = st.one_of(
    st.from_regex(r"-?\d{0,3}\.?\d{0,3}([eE][-+]?\d{1,4})?", fullmatch=True),
    st.builds("{}e{}".format, st.integers(min_value=1, max_value=999), st.integers()),
)
#: CORS patterns: origins, regex-looking text (quantifier bounds included) and anything.
CORS_PATTERN = st.one_of(
    st.from_regex(r"https?://[a-z0-9.*-]{1,30}(:\d{1,5})?", fullmatch=True),
    st.text(st.sampled_from(list("ab.*+?()[]{}|^$\\,0123456789-:/")), min_size=1, max_size=30),
    st.builds("^https://[a-z]{{{}}}$".format, st.integers(min_value=0)),
    TEXT,
)


class _Deep(list):  # type: ignore[type-arg]
    """A list nested :data:`DEEP` times, shown in short when a failure is reported."""

    def __repr__(self) -> str:
        return f"[[[…{DEEP} levels…]]]"


def deeply_nested() -> list[Any]:
    value: Any = "leaf"
    for _ in range(DEEP - 1):
        value = [value]
    return _Deep([value])


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid-looking object, sometimes with one key dropped, replaced by any JSON or added."""
    obj = dict(draw(valid))
    action = draw(st.sampled_from(["keep", "keep", "keep", "drop", "replace", "add"]))
    if action == "drop" and obj:
        del obj[draw(st.sampled_from(sorted(obj)))]
    elif action == "replace" and obj:
        obj[draw(st.sampled_from(sorted(obj)))] = draw(JSON)
    elif action == "add":
        obj[draw(TEXT)] = draw(JSON)
    return obj


# -- the relay's browser message parser -------------------------------------------------------

SUBSCRIBE = st.fixed_dictionaries(
    {
        "events": st.lists(
            mutated(
                st.fixed_dictionaries(
                    {
                        "source": mostly(st.sampled_from(models.EVENT_SOURCES), TEXT),
                        "event_type": st.one_of(st.just("*"), ID),
                    }
                )
            ),
            max_size=40,
        )
    }
)
OPT_IN = st.fixed_dictionaries(
    {
        "instance_id": ID,
        "player_id": ID,
        "brand_id": ID,
        "player_country": COUNTRY,
        "opt_in": BOOL,
    },
    optional={"contribution_value": st.one_of(CONTRIBUTION, DECIMAL_TEXT)},
)
OPT_IN_V2 = st.fixed_dictionaries(
    {
        "target": mutated(
            st.fixed_dictionaries({"type": st.sampled_from(["instance", "source"]), "id": ID})
        ),
        "operator_id": ID,
        "player": mutated(st.fixed_dictionaries({"id": ID, "country": COUNTRY, "brand_id": ID})),
        "opt_in": BOOL,
    },
    optional={"contribution_value": st.one_of(CONTRIBUTION, DECIMAL_TEXT), "opt_linked": BOOL},
)
RAFFLE = st.fixed_dictionaries({"player_id": ID, "instance_id": ID, "brand_id": ID})
CLIENT_REQUEST = st.one_of(
    st.builds(lambda body: {"SubscribeRequest": body}, mutated(SUBSCRIBE)),
    st.builds(lambda body: {"PlayerOptInRequest": body}, mutated(OPT_IN)),
    st.builds(lambda body: {"PlayerOptInRequestV2": body}, mutated(OPT_IN_V2)),
    st.builds(lambda body: {"PlayerRaffleTicketsRequest": body}, mutated(RAFFLE)),
    st.dictionaries(st.one_of(st.sampled_from(tuple(models.CLIENT_REQUESTS)), TEXT), JSON),
)
MESSAGE = st.one_of(
    CLIENT_REQUEST.map(json.dumps),  # json.dumps writes NaN/Infinity for those floats
    CLIENT_REQUEST.map(lambda obj: json.dumps(obj).encode()),
    CLIENT_REQUEST,  # an already parsed object
    JSON.map(json.dumps),
    st.text(),
    st.text(st.characters(codec=None, categories=["Cs", "Cc", "Zs", "P"])),
    st.binary(),
)
_VALID_OPT_IN = (
    '{"PlayerOptInRequest": {"instance_id": "i", "player_id": "p", "brand_id": "b", '
    '"player_country": "MT", "opt_in": true, "contribution_value": %s}}'
)


def _check_request(request: Any) -> None:
    """Every field of a loaded request (and of the objects in it) holds a value its rule
    allows; a field this test does not know fails it, so new fields get a rule here too."""
    assert dataclasses.is_dataclass(request)
    for field in dataclasses.fields(request):
        _check_field(field.name, getattr(request, field.name))


def _check_field(name: str, value: Any) -> None:
    if dataclasses.is_dataclass(value):
        _check_request(value)
    elif name == "events":
        assert 1 <= len(value) <= limits.MAX_SUBSCRIPTIONS
        for event in value:
            _check_request(event)
    elif name == "source":
        assert value in models.EVENT_SOURCES
    elif name == "event_type":
        if value != "*":
            _check_identifier(value)
    elif name == "id" or name.endswith("_id"):
        _check_identifier(value)
    elif name.endswith("country"):
        assert re.fullmatch(r"[A-Z]{2}", value, re.ASCII)
    elif name == "type":
        assert value in ("instance", "source")
    elif name == "opt_in":
        assert isinstance(value, bool)
    elif name == "opt_linked":
        assert value is None or isinstance(value, bool)
    elif name == "contribution_value":
        if value is not None:
            assert isinstance(value, Decimal)
            assert 0 < value <= limits.MAX_CONTRIBUTION
            # Upstream gets it as a JSON number: that number must still be in range.
            forwarded = float(value)
            assert 0 < forwarded <= limits.MAX_CONTRIBUTION, f"{value} is sent as {forwarded}"
    else:
        raise AssertionError(f"no rule in this test for the field {name!r}")


@FUZZ
@given(MESSAGE)
@example("[" * DEEP + "]" * DEEP)
@example('{"SubscribeRequest": ' * 700 + "{}" + "}" * 700)
@example('{"SubscribeRequest": {"events": ' + "[" * DEEP + "]" * DEEP + "}}")
@example({"SubscribeRequest": {"events": deeply_nested()}})
@example("\ud800")
@example('"\\ud800"')
@example('{"SubscribeRequest": {"events": [{"source": "thrillpots", "event_type": "\\ud800"}]}}')
@example("NaN")
@example("Infinity")
@example("-Infinity")
@example(_VALID_OPT_IN % "NaN")
@example(_VALID_OPT_IN % "Infinity")
@example(_VALID_OPT_IN % "1e400")
@example(_VALID_OPT_IN % "1e-400")
@example(_VALID_OPT_IN % '"1e-400"')
@example(_VALID_OPT_IN % ("9" * 5000))
@example(_VALID_OPT_IN % "0.5")
@example("9" * 5000)
@example("[]")
@example("null")
@example('"SubscribeRequest"')
@example("x" * 100_000)
@example(b"\xff\xfe\x00")
@example(bytearray(b'{"SubscribeRequest": {"events": [{"source": "thrillpots"}]}}'))
@example({})
@example({"SubscribeRequest": {"events": [{"source": "thrillpots"}]}, "second": {}})
def test_relay_parser_answers_a_valid_request_or_invalid_request(message: Any) -> None:
    try:
        name, request = models.load_client_request(message)
    except InvalidRequest as error:
        _short_and_printable(error)
        return
    assert name in tuple(models.CLIENT_REQUESTS)
    assert type(request).__name__ == name
    _check_request(request)


# -- REST bodies ------------------------------------------------------------------------------

_DOCUMENT = openapi_document("/thrillconnect")


def _documented_body(path: str, method: str) -> Callable[[Any], list[str]]:
    """The errors of the document's request body schema for ``method path`` (refs resolved)."""
    schema = _DOCUMENT["paths"][path][method]["requestBody"]["content"]["application/json"]
    validator = jsonschema.Draft202012Validator(
        {**schema["schema"], "components": _DOCUMENT["components"]}
    )
    return lambda body: [error.message for error in validator.iter_errors(body)]


OPT_IN_BODY = st.one_of(
    mutated(
        st.fixed_dictionaries(
            {"opt_in": BOOL},
            optional={
                "instance_id": ID,
                "source_id": ID,
                "contribution_value": CONTRIBUTION,
            },
        )
    ),
    JSON,
)
MATCH_MODE = mostly(st.sampled_from(["Exact", "Wildcard", "Regex"]), TEXT)
CORS_RULE = st.one_of(
    st.fixed_dictionaries({"pattern": CORS_PATTERN, "match_mode": MATCH_MODE}),
    mutated(st.fixed_dictionaries({"pattern": CORS_PATTERN, "match_mode": MATCH_MODE})),
)


def _lists(items: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """Short lists, and lists around the limit of 100 items."""
    return st.one_of(
        st.lists(items, max_size=4),
        st.builds(lambda item, count: [item] * count, items, st.integers(95, 105)),
    )


CORS_UPSERT_BODY = st.one_of(
    mutated(st.fixed_dictionaries({"cors_origin_list": _lists(CORS_RULE)})), JSON
)
CORS_REMOVE_BODY = st.one_of(
    mutated(st.fixed_dictionaries({"cors_origin_list": _lists(CORS_PATTERN)})), JSON
)
HOSTILE_BODIES = [
    {"opt_in": deeply_nested()},
    {"opt_in": True, "instance_id": deeply_nested()},
    {"opt_in": True, "instance_id": "x", "nested": deeply_nested()},
    {"cors_origin_list": deeply_nested()},
    {"cors_origin_list": [deeply_nested()]},
    {"cors_origin_list": [{"pattern": deeply_nested(), "match_mode": "Exact"}]},
    {"opt_in": 1, "instance_id": "x"},
    {"opt_in": True, "instance_id": "x", "contribution_value": math.nan},
    {"opt_in": True, "instance_id": "x", "contribution_value": math.inf},
    {"opt_in": True, "instance_id": "x", "contribution_value": 10**400},
    {"opt_in": True, "instance_id": "x", "contribution_value": "0.5"},
    {"opt_in": True, "instance_id": "\ud800"},
    {"cors_origin_list": [{"pattern": "(" * 300, "match_mode": "Regex"}]},
    {"cors_origin_list": [{"pattern": "a{99999999999}", "match_mode": "Regex"}]},
    {"cors_origin_list": ["\ud800"]},
    [],
    None,
    "x" * 100_000,
]


def _load(schema: Any, body: Any) -> dict[str, Any] | None:
    """The loaded body, or ``None`` when marshmallow refused it (any other error fails)."""
    try:
        loaded = schema.load(body)
    except ValidationError:
        return None
    assert isinstance(loaded, dict)
    return loaded


def _with_examples(test: Callable[..., None]) -> Callable[..., None]:
    for body in HOSTILE_BODIES:
        test = example(body)(test)
    return test


@FUZZ
@given(OPT_IN_BODY)
@_with_examples
def test_opt_in_body_accepts_only_documented_bodies(body: Any) -> None:
    loaded = _load(OptInBody(), body)
    if loaded is None:
        return
    assert _documented_body("/v1/thrillpots/optin", "post")(body) == []
    assert isinstance(body["opt_in"], bool)
    assert loaded["opt_in"] is body["opt_in"]
    targets = [key for key in ("instance_id", "source_id") if key in loaded]
    assert len(targets) == 1, "exactly one of instance_id and source_id"
    value = loaded[targets[0]]
    assert validation.identifier(value, targets[0]) == value
    assert not _has(INVISIBLE_OR_SPACE, value), f"id with invisible characters: {value!r}"
    if "contribution_value" in loaded:
        sent = body["contribution_value"]
        assert isinstance(sent, int | float)
        assert not isinstance(sent, bool)
        contribution = loaded["contribution_value"]
        assert contribution.is_finite()
        assert 0 < contribution <= Decimal(1_000_000)


def _check_cors_pattern(pattern: Any) -> None:
    assert isinstance(pattern, str)
    assert 1 <= len(pattern) <= 256
    assert not _has(INVISIBLE, pattern), f"pattern with invisible characters: {pattern!r}"


# re.compile warns (FutureWarning) about set syntax whose meaning may change in a later Python
# ("[[", "--", "&&", "~~", "||" inside a class); such a pattern is an admin's input, and the
# warning is no failure of the validator.
@pytest.mark.filterwarnings(REGEX_SET_WARNING)
@FUZZ
@given(CORS_UPSERT_BODY)
@_with_examples
def test_cors_upsert_body_accepts_only_documented_bodies(body: Any) -> None:
    loaded = _load(CorsUpsertBody(), body)
    if loaded is None:
        return
    assert _documented_body("/v1/cors", "put")(body) == []
    rules = loaded["cors_origin_list"]
    assert 1 <= len(rules) <= 100
    for rule in rules:
        assert set(rule) == {"pattern", "match_mode"}
        _check_cors_pattern(rule["pattern"])
        assert rule["match_mode"] in ("Exact", "Wildcard", "Regex")
        if rule["match_mode"] == "Regex":
            re.compile(rule["pattern"])


@FUZZ
@given(CORS_REMOVE_BODY)
@_with_examples
def test_cors_remove_body_accepts_only_documented_bodies(body: Any) -> None:
    loaded = _load(CorsRemoveBody(), body)
    if loaded is None:
        return
    assert _documented_body("/v1/cors", "delete")(body) == []
    patterns = loaded["cors_origin_list"]
    assert 1 <= len(patterns) <= 100
    for pattern in patterns:
        _check_cors_pattern(pattern)


# -- flask_thrillconnect.validation -----------------------------------------------------------

VALUE = st.one_of(TEXT, JSON, st.binary(max_size=20), st.tuples(TEXT))


def _outcome(check: Callable[[], Any], *fields: str) -> tuple[bool, Any]:
    """``(True, result)``, or ``(False, None)`` after checking the InvalidIdentifier."""
    try:
        return True, check()
    except InvalidIdentifier as caught:
        error = caught
    assert error.what in fields
    assert isinstance(error, InvalidRequest)
    assert error.code == 400
    _short_and_printable(error)
    return False, None


@FUZZ
@given(VALUE)
@example("a\U000e0041b")
@example("a\u0890b")
def test_identifier(value: Any) -> None:
    accepted, result = _outcome(lambda: validation.identifier(value, "source_id"), "source_id")
    if accepted:
        assert result is value
        _check_identifier(value)


@FUZZ
@given(VALUE)
def test_quote_segment(value: Any) -> None:
    accepted, result = _outcome(
        lambda: validation.quote_segment(value, "instance_id"), "instance_id"
    )
    if accepted:
        _check_identifier(value)
        assert re.fullmatch(r"(?:[A-Za-z0-9_.~-]|%[0-9A-F]{2})+", result)
        assert urllib.parse.unquote(result, errors="strict") == value


@FUZZ
@given(VALUE)
def test_country_code(value: Any) -> None:
    accepted, result = _outcome(lambda: validation.country_code(value), "country_code")
    if accepted:
        assert result is value
        assert re.fullmatch(r"[A-Z]{2}", value, re.ASCII)


@FUZZ
@given(VALUE)
def test_currency_code(value: Any) -> None:
    accepted, result = _outcome(lambda: validation.currency_code(value), "currency")
    if accepted:
        assert result is value
        assert re.fullmatch(r"[A-Z]{3}", value, re.ASCII)


@FUZZ
@given(
    st.one_of(
        st.none(),
        st.lists(st.one_of(VALID_ID, TEXT, JSON), max_size=150),
        st.lists(st.sampled_from(["vip", "new", "vip", "high,roller"]), max_size=40),
        VALUE,
    ),
    st.one_of(st.none(), st.integers(min_value=0, max_value=40)),
)
def test_segments(values: Any, max_count: int | None) -> None:
    kwargs = {} if max_count is None else {"max_count": max_count}
    limit = validation.MAX_SEGMENTS if max_count is None else max_count
    accepted, result = _outcome(lambda: validation.segments(values, **kwargs), "segments")
    if not accepted:
        return
    assert isinstance(result, tuple)
    assert len(result) <= limit
    assert len(set(result)) == len(result)
    if values is not None:
        assert not isinstance(values, str | bytes)
        assert result == tuple(dict.fromkeys(values))  # the first occurrence keeps its place
    for segment in result:
        _check_identifier(segment)
        assert "," not in segment


@FUZZ
@given(st.one_of(VALID_ID, VALUE), st.one_of(VALID_ID, VALUE))
def test_owner_id(operator: Any, brand: Any) -> None:
    accepted, result = _outcome(
        lambda: validation.owner_id(operator, brand), "operator_id", "brand_id"
    )
    if accepted:
        assert result == f"{operator}:{brand}"
        for part in (operator, brand):
            _check_identifier(part)
            assert ":" not in part


@FUZZ
@given(VALUE)
@example("a\U000e0041b")
def test_source_name_filter(value: Any) -> None:
    accepted, result = _outcome(lambda: validation.source_name_filter(value), "name")
    if not accepted:
        return
    if value is None or value == "":
        assert result is None
        return
    assert result is value
    assert 1 <= len(value) <= validation.MAX_NAME_FILTER_LENGTH
    assert not _has(INVISIBLE, value), f"name filter with invisible characters: {value!r}"


@FUZZ
@given(VALUE)
def test_opaque_token(value: Any) -> None:
    accepted, result = _outcome(lambda: validation.opaque_token(value), "token")
    if accepted:
        assert result is value
        assert 1 <= len(value) <= validation.MAX_TOKEN_LENGTH
        # The docstring: no whitespace or control characters (format characters are allowed).
        tokens_refuse = frozenset({"Cc", "Cs", "Zl", "Zp", "Zs"})
        assert not _has(tokens_refuse, value), f"token with whitespace or controls: {value!r}"
