"""Validation of every caller or browser value that reaches an upstream URL or message.

Each function returns the value in the form to send and raises
:class:`~flask_thrillconnect.errors.InvalidIdentifier` naming the field otherwise. Messages say
what is wrong and never echo the value (it may be huge, binary or a secret).
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from collections.abc import Iterable

from .errors import InvalidIdentifier
from .limits import (
    MAX_CORS_PATTERN_LENGTH,
    MAX_IDENTIFIER_LENGTH,
    MAX_NAME_FILTER_LENGTH,
    MAX_SEGMENTS,
    MAX_TOKEN_LENGTH,
)

__all__ = [
    "CORS_PATTERN",
    "HIDDEN_CHARACTERS_NOTE",
    "IDENTIFIER_PATTERN",
    "MAX_IDENTIFIER_LENGTH",
    "MAX_NAME_FILTER_LENGTH",
    "MAX_SEGMENTS",
    "MAX_TOKEN_LENGTH",
    "TEXT_PATTERN",
    "country_code",
    "currency_code",
    "has_hidden_character",
    "identifier",
    "opaque_token",
    "owner_id",
    "quote_segment",
    "segments",
    "source_name_filter",
    "text_pattern",
]

# The rules below are regular expressions that Python's ``re``, ECMA-262 and the Rust
# validators of JSON Schema tools read alike, so ``/openapi.json`` states what is enforced.
# Two things no such pattern can spell portably are checked in Python on top (see
# :func:`has_hidden_character`): lone surrogates, and format, private-use and unassigned
# characters beyond U+FFFF (the Unicode tag characters, say).

#: Control, format (zero-width, bidi) and line/paragraph separator characters of the Basic
#: Multilingual Plane: invisible or log-splitting, never part of an id or a name.
_INVISIBLE = (
    r"\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    r"\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"
)
#: Space characters (besides the controls above, which include tab and newline).
_SPACES = r" \xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
#: Characters that change how a URL path or query is parsed, or that proxies/servers may
#: decode or normalise on the way (``%`` would allow double-decoding tricks).
_URL_SYNTAX = {"/": "'/'", "\\": "'\\'", "?": "'?'", "#": "'#'", "%": "'%'"}

#: The end of the text in every dialect ("$" also matches before a final newline in Python).
_END = r"(?![\s\S])"

#: An identifier: 1 to 128 characters, none invisible, a space or URL syntax; not ``.`` and
#: without ``..`` (dot segments).
IDENTIFIER_PATTERN = (
    rf"^(?!\.{_END})(?!.*\.\.)[^{_INVISIBLE}{_SPACES}/\\?#%]{{1,{MAX_IDENTIFIER_LENGTH}}}{_END}"
)
#: What the documents add in words to each pattern: the part Python checks on top.
HIDDEN_CHARACTERS_NOTE = (
    "also refused: lone surrogates, and format, private-use or unassigned characters beyond U+FFFF"
)


def text_pattern(max_length: int, *, min_length: int = 1) -> str:
    """Free text (a name filter): ``min_length`` to ``max_length`` visible characters or
    spaces."""
    return rf"^[^{_INVISIBLE}]{{{min_length},{max_length}}}{_END}"


#: The source name filter of the sources listing (empty: no filter).
TEXT_PATTERN = text_pattern(MAX_NAME_FILTER_LENGTH, min_length=0)
#: A CORS rule's pattern: 1 to 256 characters, none of them invisible or a space.
CORS_PATTERN = rf"^[^{_INVISIBLE}{_SPACES}]{{1,{MAX_CORS_PATTERN_LENGTH}}}{_END}"

_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_INVISIBLE_CHAR = re.compile(f"[{_INVISIBLE}]")
_INVISIBLE_OR_SPACE = re.compile(f"[{_INVISIBLE}{_SPACES}]")
#: Categories refused beyond the Basic Multilingual Plane: format, private use, unassigned.
_HIDDEN_ASTRAL_CATEGORIES = frozenset({"Cf", "Co", "Cn"})


def has_hidden_character(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate, or a format, private-use or unassigned
    character beyond U+FFFF: invisible, and beyond what a portable pattern can spell."""
    if text.isascii():
        return False
    return any(
        0xD800 <= (code := ord(char)) <= 0xDFFF
        or (code > 0xFFFF and unicodedata.category(char) in _HIDDEN_ASTRAL_CATEGORIES)
        for char in text
    )


_COUNTRY = re.compile(r"[A-Z]{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")


def _require_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidIdentifier(field, f"must be a string, not {type(value).__name__}")
    return value


def identifier(value: object, field: str) -> str:
    """Validate an identifier that goes into an upstream URL path, query or message.

    Accepts what :data:`IDENTIFIER_PATTERN` matches: 1 to 128 characters without whitespace,
    control, format or separator characters and without ``/``, ``\\``, ``..``, ``?``, ``#``
    or ``%``; refuses ``.`` alone (a dot segment).

    :param value: the value to check.
    :param field: the field name used in the error message.
    :returns: the value, unchanged.
    :raises InvalidIdentifier: naming ``field``.
    """
    text = _require_str(value, field)
    if (
        len(text) <= MAX_IDENTIFIER_LENGTH
        and _IDENTIFIER.fullmatch(text)
        and not has_hidden_character(text)
    ):
        return text
    raise InvalidIdentifier(field, _identifier_problem(text))


def _identifier_problem(text: str) -> str:
    """Why ``text`` is not an identifier, in the words of the first rule it breaks."""
    if not text:
        return "must not be empty"
    if len(text) > MAX_IDENTIFIER_LENGTH:
        return f"must be at most {MAX_IDENTIFIER_LENGTH} characters"
    if _INVISIBLE_OR_SPACE.search(text) or has_hidden_character(text):
        return "must not contain whitespace or control characters"
    for char, shown in _URL_SYNTAX.items():
        if char in text:
            return f"must not contain {shown}"
    return "must not be or contain a dot segment"


def quote_segment(value: object, field: str) -> str:
    """Validate an identifier and percent-encode it as one URL path segment.

    :param value: the identifier.
    :param field: the field name used in the error message.
    :returns: the encoded segment (``thrilltech:brand1`` → ``thrilltech%3Abrand1``).
    :raises InvalidIdentifier: naming ``field``.
    """
    return urllib.parse.quote(identifier(value, field), safe="")


def country_code(value: object, field: str = "country_code") -> str:
    """Validate an ISO 3166-1 alpha-2 country code (two upper-case ASCII letters).

    :raises InvalidIdentifier: naming ``field``.
    """
    text = _require_str(value, field)
    if not _COUNTRY.fullmatch(text):
        raise InvalidIdentifier(field, "must be two upper-case letters (ISO 3166-1 alpha-2)")
    return text


def currency_code(value: object, field: str = "currency") -> str:
    """Validate an ISO 4217 currency code (three upper-case ASCII letters).

    :raises InvalidIdentifier: naming ``field``.
    """
    text = _require_str(value, field)
    if not _CURRENCY.fullmatch(text):
        raise InvalidIdentifier(field, "must be three upper-case letters (ISO 4217)")
    return text


def segments(
    values: Iterable[object] | None, field: str = "segments", *, max_count: int = MAX_SEGMENTS
) -> tuple[str, ...]:
    """Validate player segments: identifiers without ``,`` (they travel comma-joined).

    Duplicates are dropped, the first occurrence keeps its place.

    :param values: an iterable of segment ids (a bare string is refused: it is almost always
        a forgotten tuple).
    :param field: the field name used in the error message.
    :param max_count: the largest number of distinct segments accepted.
    :raises InvalidIdentifier: naming ``field``.
    """
    if values is None:
        return ()
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidIdentifier(field, "must be a list of segment ids")
    result: list[str] = []
    for count, value in enumerate(values, start=1):
        if count > max_count * 4:
            # Stop reading a hostile (or endless) iterable early.
            raise InvalidIdentifier(field, f"must hold at most {max_count} segments")
        segment = identifier(value, field)
        if "," in segment:
            raise InvalidIdentifier(field, "a segment must not contain ','")
        if segment not in result:
            result.append(segment)
        if len(result) > max_count:
            raise InvalidIdentifier(field, f"must hold at most {max_count} segments")
    return tuple(result)


def owner_id(operator: object, brand: object) -> str:
    """Join bare operator and brand ids into an owner id (``thrilltech:brand1``).

    :raises InvalidIdentifier: when either id is invalid or contains ``:``.
    """
    parts = (identifier(operator, "operator_id"), identifier(brand, "brand_id"))
    for part, field in zip(parts, ("operator_id", "brand_id"), strict=True):
        if ":" in part:
            raise InvalidIdentifier(field, "a bare id must not contain ':'")
    return f"{parts[0]}:{parts[1]}"


def source_name_filter(value: object, field: str = "name") -> str | None:
    """Validate the free-text source name filter of the sources listing.

    :returns: the filter, or ``None`` when there is none (``None`` or empty).
    :raises InvalidIdentifier: when it is not a string, too long or not printable.
    """
    if value is None or value == "":
        return None
    text = _require_str(value, field)
    if len(text) > MAX_NAME_FILTER_LENGTH:
        raise InvalidIdentifier(field, f"must be at most {MAX_NAME_FILTER_LENGTH} characters")
    if _INVISIBLE_CHAR.search(text) or has_hidden_character(text):
        raise InvalidIdentifier(field, "must contain printable characters only")
    return text


def opaque_token(value: object, field: str = "token") -> str:
    """Validate an opaque credential (e.g. a player's wallet token) before it goes in a URL.

    Checks only the shape (1 to 4096 characters, no whitespace or control characters); the
    message never contains the value.

    :raises InvalidIdentifier: naming ``field``.
    """
    text = _require_str(value, field)
    if not text:
        raise InvalidIdentifier(field, "must not be empty")
    if len(text) > MAX_TOKEN_LENGTH:
        raise InvalidIdentifier(field, f"must be at most {MAX_TOKEN_LENGTH} characters")
    if _INVISIBLE_OR_SPACE.search(text) or has_hidden_character(text):
        raise InvalidIdentifier(field, "must not contain whitespace or control characters")
    return text
