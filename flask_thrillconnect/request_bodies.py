"""Schemas for the JSON bodies browsers send to the blueprint.

Unknown fields are refused, not ignored: a body that carries ``player_id`` is an
attempt to speak for someone else, and the answer says so.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates_schema,
)

from . import validation
from .errors import InvalidIdentifier

#: The largest JSON body the blueprint reads: 100 CORS rules fit with room to spare.
MAX_REQUEST_BODY_BYTES = 64 * 1024
#: Contribution values a player may choose (upstream refuses more; this bounds what we send).
MAX_CONTRIBUTION = Decimal("1000000")
#: CORS rules per request, and the length of one pattern.
MAX_CORS_RULES = 100
MAX_CORS_PATTERN_LENGTH = 256
CORS_PATTERN = validation.text_pattern(MAX_CORS_PATTERN_LENGTH)
_CORS_PATTERN = re.compile(CORS_PATTERN)


def _cors_pattern(value: str) -> None:
    # fullmatch: "$" alone would let a trailing newline through.
    if not _CORS_PATTERN.fullmatch(value):
        raise ValidationError(
            f"must be 1 to {MAX_CORS_PATTERN_LENGTH} characters, none of them control characters"
        )


def _identifier(field_name: str):  # type: ignore[no-untyped-def]
    def check(value: str) -> None:
        try:
            validation.identifier(value, field_name)
        except InvalidIdentifier as exc:
            raise ValidationError(exc.description or "not a valid id") from None

    return check


class OptInBody(Schema):
    """``{"instance_id" | "source_id", "opt_in", "contribution_value"?}``."""

    class Meta:
        unknown = RAISE

    instance_id = fields.String(validate=_identifier("instance_id"))
    source_id = fields.String(validate=_identifier("source_id"))
    opt_in = fields.Boolean(required=True, truthy={True}, falsy={False})
    contribution_value = fields.Decimal(
        places=None,
        allow_nan=False,
        validate=validate.Range(min=Decimal("0"), max=MAX_CONTRIBUTION, min_inclusive=False),
    )

    @pre_load
    def _contribution_is_a_number(self, data: Any, **_: Any) -> Any:
        # fields.Decimal also takes "0.3" and true; the document promises a JSON number.
        value = data.get("contribution_value") if isinstance(data, dict) else None
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValidationError("must be a number", "contribution_value")
        return data

    @validates_schema
    def _one_target(self, data: dict[str, Any], **_: Any) -> None:
        if ("instance_id" in data) == ("source_id" in data):
            raise ValidationError("give exactly one of instance_id and source_id", "target")


class CorsRuleBody(Schema):
    class Meta:
        unknown = RAISE

    pattern = fields.String(required=True, validate=_cors_pattern)
    match_mode = fields.String(
        required=True, validate=validate.OneOf(["Exact", "Wildcard", "Regex"])
    )

    @validates_schema
    def _regex_compiles(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("match_mode") == "Regex":
            try:
                re.compile(data["pattern"])
            except re.error as exc:
                raise ValidationError(
                    f"not a valid regular expression: {exc.msg}", "pattern"
                ) from None


class CorsUpsertBody(Schema):
    class Meta:
        unknown = RAISE

    cors_origin_list = fields.List(
        fields.Nested(CorsRuleBody),
        required=True,
        validate=validate.Length(min=1, max=MAX_CORS_RULES),
    )


class CorsRemoveBody(Schema):
    class Meta:
        unknown = RAISE

    cors_origin_list = fields.List(
        fields.String(validate=_cors_pattern),
        required=True,
        validate=validate.Length(min=1, max=MAX_CORS_RULES),
    )
