"""Validation of every caller or browser value that reaches an upstream URL or message.

Each function returns the value in the form to send and raises
:class:`~flask_thrillconnect.errors.InvalidIdentifier` naming the field otherwise. Messages say
what is wrong and never echo the value (it may be huge, binary or a secret).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

from .errors import InvalidIdentifier

__all__ = [
    "MAX_IDENTIFIER_LENGTH",
    "MAX_NAME_FILTER_LENGTH",
    "MAX_SEGMENTS",
    "MAX_TOKEN_LENGTH",
    "country_code",
    "currency_code",
    "identifier",
    "opaque_token",
    "owner_id",
    "quote_segment",
    "segments",
    "source_name_filter",
]

MAX_IDENTIFIER_LENGTH = 128
MAX_NAME_FILTER_LENGTH = 128
MAX_SEGMENTS = 32
MAX_TOKEN_LENGTH = 4096

# Characters that change how a URL path or query is parsed, or that proxies/servers may
# decode or normalise on the way (``%`` would allow double-decoding tricks).
_FORBIDDEN_IN_IDENTIFIER = {
    "/": "'/'",
    "\\": "'\\'",
    "?": "'?'",
    "#": "'#'",
    "%": "'%'",
}
_COUNTRY = re.compile(r"[A-Z]{2}")
_PLAIN_IDENTIFIER = re.compile(rf"[A-Za-z0-9_:.-]{{1,{MAX_IDENTIFIER_LENGTH}}}")
_CURRENCY = re.compile(r"[A-Z]{3}")


def _require_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidIdentifier(field, f"must be a string, not {type(value).__name__}")
    return value


def _has_unprintable(value: str) -> bool:
    # str.isprintable() is False for control, format, surrogate, private-use, unassigned and
    # separator characters except the ASCII space; 0x7f (DEL) is a control character.
    return not value.isprintable()


def identifier(value: object, field: str) -> str:
    """Validate an identifier that goes into an upstream URL path, query or message.

    Accepts 1 to 128 printable characters without whitespace and without ``/``, ``\\``,
    ``..``, ``?``, ``#`` or ``%``; refuses ``.`` alone (a dot segment).

    :param value: the value to check.
    :param field: the field name used in the error message.
    :returns: the value, unchanged.
    :raises InvalidIdentifier: naming ``field``.
    """
    text = _require_str(value, field)
    # Fast path for the ids seen on every request (UUIDs, game codes): one regex.
    if _PLAIN_IDENTIFIER.fullmatch(text) and ".." not in text and text != ".":
        return text
    if not text:
        raise InvalidIdentifier(field, "must not be empty")
    if len(text) > MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifier(field, f"must be at most {MAX_IDENTIFIER_LENGTH} characters")
    if _has_unprintable(text) or any(ch.isspace() for ch in text):
        raise InvalidIdentifier(field, "must not contain whitespace or control characters")
    for char, shown in _FORBIDDEN_IN_IDENTIFIER.items():
        if char in text:
            raise InvalidIdentifier(field, f"must not contain {shown}")
    if ".." in text or text == ".":
        raise InvalidIdentifier(field, "must not be or contain a dot segment")
    return text


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
    if _has_unprintable(text):
        raise InvalidIdentifier(field, "must contain printable characters only")
    return text


def opaque_token(value: object, field: str = "token") -> str:
    """Validate an opaque credential (e.g. a player's wallet token) before it goes in a URL.

    Checks only the shape (1 to 4096 printable characters, no whitespace); the message never
    contains the value.

    :raises InvalidIdentifier: naming ``field``.
    """
    text = _require_str(value, field)
    if not text:
        raise InvalidIdentifier(field, "must not be empty")
    if len(text) > MAX_TOKEN_LENGTH:
        raise InvalidIdentifier(field, f"must be at most {MAX_TOKEN_LENGTH} characters")
    if _has_unprintable(text) or any(ch.isspace() for ch in text):
        raise InvalidIdentifier(field, "must not contain whitespace or control characters")
    return text
