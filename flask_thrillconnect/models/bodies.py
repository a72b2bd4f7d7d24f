"""The JSON bodies browsers send to the blueprint, which the portal also sends to ``/v1/cors``.

Unknown fields are refused, not ignored: a body that carries ``player_id`` is an attempt to
speak for someone else, and the answer says so. Bodies load into plain dicts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from marshmallow import RAISE, ValidationError, fields, post_load, validate, validates_schema

from ..limits import MAX_CORS_RULES
from .base import WireSchema, wire_schema
from .fields import CORS_PATTERN_RULES, ContributionField, IdentifierField, StrictBoolean
from .rest import CorsOrigin

__all__ = ["BodySchema", "CorsRemoveBody", "CorsRuleBody", "CorsUpsertBody", "OptInBody"]


class BodySchema(WireSchema):
    """A body: unknown fields refused, ``Strict`` checks applied, loads into a dict."""

    strict = True
    #: What the body's ``@validates_schema`` checks, as JSON Schema keywords (for
    #: ``/openapi.json``).
    json_schema: ClassVar[Mapping[str, Any]] = {}

    class Meta:
        unknown = RAISE

    @post_load
    def _make_model(self, data: dict[str, Any], **kwargs: Any) -> Any:
        return data


class OptInBody(BodySchema):
    """``POST /v1/thrillpots/optin``: ``{"instance_id" | "source_id", "opt_in",
    "contribution_value"?}``."""

    json_schema = {
        "oneOf": [{"required": ["instance_id"]}, {"required": ["source_id"]}],
        "description": "exactly one of instance_id and source_id",
    }

    instance_id = IdentifierField()
    source_id = IdentifierField()
    opt_in = StrictBoolean(required=True)
    contribution_value = ContributionField()

    @validates_schema
    def _one_target(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("instance_id" in data) == ("source_id" in data):
            raise ValidationError("give exactly one of instance_id and source_id", "target")


class _CorsRuleChecks(BodySchema):
    json_schema = {"description": "a Regex pattern must be a valid regular expression"}

    @validates_schema
    def _regex_compiles(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("match_mode") == "Regex":
            try:
                re.compile(data["pattern"])
            except (re.error, OverflowError, RecursionError) as error:
                problem = error.msg if isinstance(error, re.error) else "too complex"
                raise ValidationError(
                    f"not a valid regular expression: {problem}", "pattern"
                ) from None


#: One CORS rule the portal sends: the checked form of :class:`CorsOrigin`.
CorsRuleBody = wire_schema(CorsOrigin, _CorsRuleChecks, name="CorsRuleBody")


class CorsUpsertBody(BodySchema):
    """``PUT /v1/cors``: ``{"cors_origin_list": [rule, …]}`` (upsert by pattern)."""

    cors_origin_list = fields.List(
        fields.Nested(CorsRuleBody),
        required=True,
        validate=validate.Length(min=1, max=MAX_CORS_RULES),
    )


class CorsRemoveBody(BodySchema):
    """``DELETE /v1/cors``: ``{"cors_origin_list": ["pattern", …]}``."""

    cors_origin_list = fields.List(
        fields.String(validate=CORS_PATTERN_RULES),
        required=True,
        validate=validate.Length(min=1, max=MAX_CORS_RULES),
    )
