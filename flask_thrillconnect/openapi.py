"""The OpenAPI 3.1 document of the blueprint's HTTP routes (served at ``/openapi.json``).

Every body and answer is described by apispec from the schemas that load and dump it
(:mod:`flask_thrillconnect.models`), so the document cannot drift from what is enforced: the
fields of :mod:`~flask_thrillconnect.models.fields` carry their rules as JSON Schema
(identifier and text patterns, contribution bounds, money as numbers or decimal strings),
marshmallow's validators become ranges, lengths and enums, and a body's own rules (exactly one
of ``instance_id`` and ``source_id``) come from the body schema.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import EXCLUDE, Schema, fields, validate

from . import __version__
from .models import (
    BodySchema,
    CorsListSchema,
    CorsRemovalSchema,
    CorsRemoveBody,
    CorsRuleBody,
    CorsUpsertBody,
    CurrenciesSchema,
    JackpotSchema,
    OptInBody,
    OptInEventSchema,
    SourceSchema,
    TickerSchema,
    to_json,
)
from .models.fields import (
    ContributionTypeField,
    DecimalStringField,
    IdentifierField,
    NameFilterField,
    WireField,
)

__all__ = ["openapi_document"]


class _Answer(Schema):
    class Meta:
        unknown = EXCLUDE  # the document does not promise that no field is ever added


class _ErrorAnswer(_Answer):
    """Every error the blueprint answers: ``{"error": code, "message": text}``."""

    error = fields.String(required=True)
    message = fields.String(required=True)


_HEALTH_STATUSES = ["ok", "degraded", "down"]


class _HealthAnswer(_Answer):
    """``GET /health``: the overall status, and nothing else (public)."""

    status = fields.String(required=True, validate=validate.OneOf(_HEALTH_STATUSES))


class _HealthDetailAnswer(_Answer):
    """``GET /health/detail``: the status, what is wrong, upstream, relay and cache figures."""

    status = fields.String(required=True, validate=validate.OneOf(_HEALTH_STATUSES))
    problems = fields.List(fields.String(), required=True)
    upstream = fields.Dict(required=True)
    relay = fields.Dict(required=True)
    cache = fields.Dict(required=True)


#: The components, by the names the document has always used.
_COMPONENTS: dict[str, type[Schema]] = {
    "Error": _ErrorAnswer,
    "Currencies": CurrenciesSchema,
    "Source": SourceSchema,
    "Jackpot": JackpotSchema,
    "Ticker": TickerSchema,
    "OptInRequest": OptInBody,
    "OptInResult": OptInEventSchema,
    "CorsRule": CorsRuleBody,
    "CorsList": CorsListSchema,
    "CorsUpsert": CorsUpsertBody,
    "CorsRemove": CorsRemoveBody,
    "CorsRemoved": CorsRemovalSchema,
    "Health": _HealthAnswer,
    "HealthDetail": _HealthDetailAnswer,
}

_STRING = {"type": "string"}
_CACHE_HEADERS = {
    "X-Cache": {"schema": {"enum": ["HIT", "MISS", "STALE", "UPDATING"]}},
    "ETag": {"schema": _STRING},
    "Cache-Control": {"schema": _STRING},
}


def _wire_rules(converter: Any, field: fields.Field, **kwargs: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    """apispec attribute function: the JSON Schema rules our own fields carry."""
    return dict(field.json_schema) if isinstance(field, WireField) else {}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"description": "error", "content": _json(_ref("Error"))} for code in codes}


def _cached_get(summary: str, schema: dict[str, Any], parameters: list[Any]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK", "headers": _CACHE_HEADERS, "content": _json(schema)},
                "304": {"description": "Not modified (If-None-Match matched the ETag)"},
                **_errors(400, 404, 429, 502, 503, 504),
            },
        }
    }


def _csrf_header() -> dict[str, Any]:
    return {"name": "X-CSRFToken", "in": "header", "required": True, "schema": _STRING}


def _admin(method: str, summary: str, request: str | None, response: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": _json(_ref(response))},
            **_errors(400, 403, 404, 502, 503, 504),
        },
    }
    if request:
        operation["requestBody"] = {"required": True, "content": _json(_ref(request))}
        operation["parameters"] = [_csrf_header()]
    return {method: operation}


def _paths(identifier: dict[str, Any], name_filter: dict[str, Any]) -> dict[str, Any]:
    def path_param(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": identifier}

    return {
        "/v1/currencies": _cached_get("Exchange rates", _ref("Currencies"), []),
        "/v1/thrillpots/sources": _cached_get(
            "The brand's sources",
            {"type": "array", "items": _ref("Source")},
            [{"name": "name", "in": "query", "required": False, "schema": name_filter}],
        ),
        "/v1/thrillpots/instances/source/{source_id}": _cached_get(
            "The jackpot a source shows to the current player",
            _ref("Jackpot"),
            [path_param("source_id")],
        ),
        "/v1/thrillpots/instances/{instance_id}/ticker": _cached_get(
            "The ticker of a jackpot instance", _ref("Ticker"), [path_param("instance_id")]
        ),
        "/v1/thrillpots/optin": {
            "post": {
                "summary": "Opt the logged-in player in or out",
                "parameters": [_csrf_header()],
                "requestBody": {"required": True, "content": _json(_ref("OptInRequest"))},
                "responses": {
                    "200": {
                        "description": "The new opt-in status",
                        "content": _json(_ref("OptInResult")),
                    },
                    **_errors(400, 401, 403, 404, 502, 503, 504),
                },
            }
        },
        "/v1/cors": {
            **_admin("get", "List CORS rules", None, "CorsList"),
            **_admin("put", "Add or update CORS rules", "CorsUpsert", "CorsList"),
            **_admin("delete", "Remove CORS rules", "CorsRemove", "CorsRemoved"),
        },
        "/health": {
            "get": {
                "summary": "Public liveness: ok, degraded or down (answered within ~1 s)",
                "responses": {"200": {"description": "OK", "content": _json(_ref("Health"))}},
            }
        },
        "/health/detail": {
            "get": {
                "summary": "Upstream, stream, relay, cache and Redis figures (admin_check)",
                "responses": {
                    "200": {"description": "OK", "content": _json(_ref("HealthDetail"))},
                    **_errors(403),
                },
            }
        },
    }


@cache
def openapi_document(prefix: str) -> dict[str, Any]:
    """The document for a blueprint mounted at ``prefix`` (plain JSON values only)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="flask-thrillconnect proxy",
        version=__version__,
        openapi_version="3.1.0",
        plugins=[plugin],
        servers=[{"url": prefix or "/"}],
    )
    plugin.map_to_openapi_type(DecimalStringField, "string", None)  # type: ignore[no-untyped-call]
    plugin.map_to_openapi_type(ContributionTypeField, "object", None)  # type: ignore[no-untyped-call]
    converter = plugin.converter
    assert converter is not None  # set by APISpec(plugins=…)
    converter.add_attribute_function(_wire_rules)  # type: ignore[no-untyped-call]
    for name, schema in _COMPONENTS.items():
        rules = dict(schema.json_schema) if issubclass(schema, BodySchema) else {}
        spec.components.schema(name, component=rules, schema=schema)
    document = spec.to_dict()
    document["paths"] = _paths(
        converter.field2property(IdentifierField()), converter.field2property(NameFilterField())
    )
    # One pass through the package's encoder: tuples become arrays, Decimals numbers.
    result: dict[str, Any] = json.loads(to_json(document))
    return result
