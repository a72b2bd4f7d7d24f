"""JSON in and out: the one encoder (one rule for :class:`~decimal.Decimal`) and the one parser.

Money is a :class:`~decimal.Decimal` inside the package and a JSON number on the wire (the
ticker's decimal strings are dumped as strings by their schema before they get here). The rule:
a whole value written without a fraction is an integer (``Decimal("12")`` → ``12``), any other
value the float whose shortest repr is the decimal (``Decimal("10.53")`` → ``10.53``,
``Decimal("10.0")`` → ``10.0``), so what upstream wrote comes back as it was written.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

__all__ = ["json_number", "parse_json", "to_json", "to_json_bytes"]


def json_number(value: Decimal) -> int | float:
    """The JSON number of a decimal: an ``int`` when it was written without a fraction."""
    if value.as_tuple().exponent >= 0:  # type: ignore[operator]  # "n"/"F" are not finite
        return int(value)
    return float(value)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return json_number(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(obj: Any) -> str:
    """Compact JSON text; every :class:`~decimal.Decimal` becomes a number by one rule."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_default)


def to_json_bytes(obj: Any) -> bytes:
    """:func:`to_json` as UTF-8 bytes (response bodies, cache entries)."""
    return to_json(obj).encode()


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
