"""The field types of the wire models: money, identifiers, timestamps and their rules.

Models annotate their dataclass fields with the aliases below (``Timestamp``, ``Identifier``,
``DecimalText``…); :func:`~flask_thrillconnect.models.base.wire_schema` turns each into the
marshmallow field named in the alias. A field that checks a value also carries the same rule
as JSON Schema (:attr:`WireField.json_schema`), which ``/openapi.json`` states, so what is
enforced and what is documented come from one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args

from marshmallow import ValidationError, fields, validate

from .. import validation
from ..errors import InvalidIdentifier
from ..limits import (
    MAX_CONTRIBUTION,
    MAX_CORS_PATTERN_LENGTH,
    MAX_IDENTIFIER_LENGTH,
    MAX_NAME_FILTER_LENGTH,
)
from .encoding import json_number

__all__ = [
    "CONTRIBUTION_KINDS",
    "CORS_PATTERN",
    "CORS_PATTERN_RULES",
    "KEEP_NULL",
    "Contribution",
    "ContributionField",
    "ContributionKind",
    "ContributionType",
    "ContributionTypeField",
    "Count",
    "CountField",
    "CountryCode",
    "CountryField",
    "DecimalStringField",
    "DecimalText",
    "Identifier",
    "IdentifierField",
    "MoneyField",
    "NameFilterField",
    "Nullable",
    "Sequence",
    "Strict",
    "StrictBoolean",
    "StrictInteger",
    "Timestamp",
    "TimestampField",
    "WireField",
]

T = TypeVar("T")


class _KeepNull:
    def __repr__(self) -> str:
        return "KEEP_NULL"


#: Marks a field that stays on the wire as ``null`` when it is ``None`` (others are left out).
KEEP_NULL = _KeepNull()
#: ``Nullable[X]``: absent loads as ``None``, and ``None`` dumps as ``null`` (not left out).
Nullable = Annotated[T | None, KEEP_NULL]


@dataclass(frozen=True)
class Strict:
    """Rules for what the portal sends, not for what it loads from upstream.

    Upstream may answer with values a newer release allows (a new CORS match mode, a regex
    dialect Python does not compile); listing them must still work.
    """

    checks: tuple[Callable[[Any], Any], ...]

    def __init__(self, *checks: Callable[[Any], Any]) -> None:
        object.__setattr__(self, "checks", checks)


class WireField:
    """A field whose rule ``/openapi.json`` states: :attr:`json_schema` (JSON Schema keywords)."""

    json_schema: ClassVar[Mapping[str, Any]] = {}


# -- numbers -----------------------------------------------------------------------------------


class MoneyField(fields.Decimal):
    """A JSON number (or decimal string) loaded as an exact :class:`~decimal.Decimal`.

    Dumps back to a JSON number by :func:`~flask_thrillconnect.models.encoding.json_number`.
    """

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return json_number(value if isinstance(value, Decimal) else Decimal(str(value)))


class DecimalStringField(fields.Decimal, WireField):
    """Money the upstream writes as a decimal string (the ticker): ``"10.53"``."""

    json_schema = {"pattern": r"^-?\d+(\.\d+)?$"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(as_string=True, **kwargs)


class ContributionField(MoneyField, WireField):
    """A contribution a player asks for: a JSON number, above 0 and at most the limit."""

    json_schema = {
        "exclusiveMinimum": 0,
        "maximum": int(MAX_CONTRIBUTION),
        "description": "the player's contribution; upstream may narrow the range",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        # fields.Decimal also takes "0.3" and true; the wire and the document say a number.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError("Must be a number.")
        number: Decimal = super()._deserialize(value, attr, data, **kwargs)
        if not 0 < number <= MAX_CONTRIBUTION:
            raise ValidationError(f"Must be above 0 and at most {MAX_CONTRIBUTION}.")
        return number


class StrictBoolean(fields.Boolean):
    """A boolean that accepts only JSON ``true``/``false`` (not ``1``, ``"yes"``…)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictInteger(fields.Integer):
    """A JSON integer (not ``1.5``, not ``"1"``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)


class TimestampField(StrictInteger, WireField):
    """Epoch milliseconds, an integer."""

    json_schema = {"description": "epoch milliseconds"}


class CountField(StrictInteger):
    """A non-negative integer count."""

    def __init__(self, **kwargs: Any) -> None:
        checks = [validate.Range(min=0), *_as_list(kwargs.pop("validate", None))]
        super().__init__(validate=checks, **kwargs)


def _as_list(checks: Any) -> list[Any]:
    if checks is None:
        return []
    return list(checks) if isinstance(checks, list | tuple) else [checks]


class Sequence(fields.List):  # type: ignore[type-arg]
    """A JSON array loaded as a tuple (the dataclasses are immutable)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return tuple(super()._deserialize(value, attr, data, **kwargs))


# -- text --------------------------------------------------------------------------------------


class _CheckedString(fields.String, WireField):
    """A string checked by one of :mod:`flask_thrillconnect.validation`'s functions."""

    def check(self, text: str, field: str) -> object:
        """Raise :class:`InvalidIdentifier` when ``text`` breaks the rule."""
        raise NotImplementedError

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        try:
            self.check(text, attr or "value")
        except InvalidIdentifier as error:
            raise ValidationError(error.problem) from error
        return text


class IdentifierField(_CheckedString):
    """An id that goes into an upstream URL or message (:func:`validation.identifier`)."""

    json_schema = {
        "minLength": 1,
        "maxLength": MAX_IDENTIFIER_LENGTH,
        "pattern": validation.IDENTIFIER_PATTERN,
        "description": "no whitespace or control characters, no '/', '\\', '?', '#', '%', "
        f"not '.' and no '..'; {validation.HIDDEN_CHARACTERS_NOTE}",
    }

    def check(self, text: str, field: str) -> object:
        return validation.identifier(text, field)


class CountryField(_CheckedString):
    """An ISO 3166-1 alpha-2 country code (:func:`validation.country_code`)."""

    json_schema = {"pattern": "^[A-Z]{2}$"}

    def check(self, text: str, field: str) -> object:
        return validation.country_code(text, field)


class NameFilterField(_CheckedString):
    """The source name filter of the sources listing (:func:`validation.source_name_filter`)."""

    json_schema = {
        "maxLength": MAX_NAME_FILTER_LENGTH,
        "pattern": validation.TEXT_PATTERN,
        "description": "case-insensitive part of the source name; empty: all; "
        + validation.HIDDEN_CHARACTERS_NOTE,
    }

    def check(self, text: str, field: str) -> object:
        return validation.source_name_filter(text, field)


#: A CORS rule's pattern: 1 to 256 characters, none of them a space or invisible.
CORS_PATTERN = validation.CORS_PATTERN


def _no_hidden_character(text: str) -> None:
    # What the pattern cannot spell portably (see the validation module).
    if validation.has_hidden_character(text):
        raise ValidationError("must not contain control characters")


#: The checks of a CORS pattern the portal sends (apispec states the first two as JSON Schema).
CORS_PATTERN_RULES = (
    validate.Length(min=1, max=MAX_CORS_PATTERN_LENGTH),
    validate.Regexp(
        CORS_PATTERN,
        error=f"must be 1 to {MAX_CORS_PATTERN_LENGTH} characters, without spaces or control "
        "characters",
    ),
    _no_hidden_character,
)


# -- contribution type -------------------------------------------------------------------------

ContributionKind = Literal["Fixed", "Percentage"]
CONTRIBUTION_KINDS: tuple[str, ...] = get_args(ContributionKind)


@dataclass(frozen=True, slots=True)
class ContributionType:
    """How a player contributes: ``Fixed`` amount per bet or ``Percentage`` of the bet.

    Externally tagged on the wire: ``{"Fixed": 0.1}``.
    """

    kind: str
    value: Decimal


class ContributionTypeField(fields.Field, WireField):  # type: ignore[type-arg]
    """``{"Fixed": 0.1}`` ⇄ :class:`ContributionType`."""

    json_schema = {
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": {"type": "number"},
        "description": "Fixed or Percentage",
    }

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> ContributionType:
        if not isinstance(value, Mapping) or len(value) != 1:
            raise ValidationError("Must be an object with exactly one key: Fixed or Percentage.")
        ((kind, amount),) = value.items()
        if kind not in CONTRIBUTION_KINDS:
            raise ValidationError("Must be tagged Fixed or Percentage.")
        number = _MONEY.deserialize(amount)
        if number is None or number < 0:
            raise ValidationError("Must not be negative.")
        return ContributionType(kind=kind, value=number)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else {value.kind: json_number(value.value)}


_MONEY = MoneyField()

# -- the aliases models annotate with ----------------------------------------------------------

#: Epoch milliseconds.
Timestamp = Annotated[int, TimestampField]
#: A non-negative count.
Count = Annotated[int, CountField]
#: Money written as a decimal string (plain ``Decimal`` is money written as a number).
DecimalText = Annotated[Decimal, DecimalStringField]
#: An id checked before it reaches an upstream URL or message.
Identifier = Annotated[str, IdentifierField]
#: An ISO 3166-1 alpha-2 country code.
CountryCode = Annotated[str, CountryField]
#: A contribution a player asks for (a JSON number in ``(0, MAX_CONTRIBUTION]``).
Contribution = Annotated[Decimal, ContributionField]
