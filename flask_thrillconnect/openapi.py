"""The OpenAPI 3.1 document of the blueprint's HTTP routes (served at ``/openapi.json``)."""

from __future__ import annotations

from functools import cache
from typing import Any

from . import __version__
from .request_bodies import (
    CORS_PATTERN,
    MAX_CONTRIBUTION,
    MAX_CORS_PATTERN_LENGTH,
    MAX_CORS_RULES,
)
from .validation import (
    IDENTIFIER_PATTERN,
    MAX_IDENTIFIER_LENGTH,
    MAX_NAME_FILTER_LENGTH,
    TEXT_PATTERN,
)

_STRING = {"type": "string"}
_INT = {"type": "integer"}
_NUMBER = {"type": "number"}
_BOOL = {"type": "boolean"}
_MILLIS = {"type": ["integer", "null"], "description": "epoch milliseconds"}
_NULLABLE_MILLIS = {"type": ["integer", "null"]}
# What the validators enforce, so that generated clients and fuzzers know our 400s.
_IDENTIFIER = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_IDENTIFIER_LENGTH,
    "pattern": IDENTIFIER_PATTERN,
    "description": "no whitespace or control characters, no '/', '\\', '?', '#', '%', "
    "not '.' and no '..'",
}
_CORS_PATTERN = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_CORS_PATTERN_LENGTH,
    "pattern": CORS_PATTERN,
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    return schema


_SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": _STRING, "message": _STRING}),
    "Currencies": _object(
        {
            "last_updated": _INT,
            "base_currency": _STRING,
            "multipliers": {"type": "object", "additionalProperties": _NUMBER},
        }
    ),
    "Source": _object(
        {
            "owner_id": _STRING,
            "source_name": _STRING,
            "source_id": _STRING,
            "jackpots": {
                "type": "array",
                "items": _object({"priority": _INT, "owner_id": _STRING, "instance_id": _STRING}),
            },
        }
    ),
    "JackpotPot": _object(
        {
            "id": _STRING,
            "instance_count": _INT,
            "is_progressive": _BOOL,
            "current_value": _NUMBER,
            "community_split": _NUMBER,
        },
        required=["id", "is_progressive", "current_value"],
    ),
    "OptInStatus": {
        "type": ["object", "null"],
        "properties": {
            "instance_id": _STRING,
            "player_id": _STRING,
            "opted_in": _BOOL,
            "preferred_contribution_value": _NUMBER,
            "contribution_count": _INT,
            "contribution_value": _NUMBER,
            "last_updated": _NULLABLE_MILLIS,
        },
        "required": ["instance_id", "player_id", "opted_in"],
    },
    "Jackpot": _object(
        {
            "id": _STRING,
            "currency": _STRING,
            "opt_in_required": _BOOL,
            "contribution_type": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": _NUMBER,
            },
            "optin_status": _ref("OptInStatus"),
            "pots": {"type": "array", "items": _ref("JackpotPot")},
            "timestamp_start": _MILLIS,
            "timestamp_end": _NULLABLE_MILLIS,
            "status": {"enum": ["Pending", "Active", "Paused", "Terminated"]},
        },
        required=["id", "currency", "pots", "status"],
    ),
    "Ticker": _object(
        {
            "id": _STRING,
            "jackpot_type": {"enum": ["Jackpot", "Raffle"]},
            "currency": _STRING,
            "pots": {
                "type": "array",
                "items": _object(
                    {
                        "id": _STRING,
                        "is_progressive": _BOOL,
                        "current_value": {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"},
                        "community_split": {"type": ["string", "null"]},
                    },
                    required=["id", "is_progressive", "current_value"],
                ),
            },
            "allowed_brands": {"type": "array", "items": _STRING},
            "allowed_sources": {"type": "array", "items": _STRING},
            "status": {"enum": ["Pending", "Active", "Paused", "Terminated"]},
            "timestamp_start": _MILLIS,
            "timestamp_end": _NULLABLE_MILLIS,
            "last_updated": _MILLIS,
        },
        required=["id", "jackpot_type", "currency", "pots", "status"],
    ),
    "OptInRequest": {
        "type": "object",
        "properties": {
            "instance_id": _IDENTIFIER,
            "source_id": _IDENTIFIER,
            "opt_in": _BOOL,
            "contribution_value": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": float(MAX_CONTRIBUTION),
                "description": "the player's contribution; upstream may narrow the range",
            },
        },
        "required": ["opt_in"],
        "oneOf": [{"required": ["instance_id"]}, {"required": ["source_id"]}],
        "description": "exactly one of instance_id and source_id",
        "additionalProperties": False,
    },
    "OptInResult": _object(
        {
            "instance_id": _STRING,
            "player_id": _STRING,
            "opted_in": _BOOL,
            "preferred_contribution_value": {"type": ["number", "null"]},
            "contribution_count": _INT,
            "contribution_value": _NUMBER,
            "last_updated": _NULLABLE_MILLIS,
        },
        required=["instance_id", "player_id", "opted_in"],
    ),
    "CorsRule": {
        **_object(
            {"pattern": _CORS_PATTERN, "match_mode": {"enum": ["Exact", "Wildcard", "Regex"]}}
        ),
        "additionalProperties": False,
        "description": "a Regex pattern must be a valid regular expression",
    },
    "CorsList": _object({"cors_origin_list": {"type": "array", "items": _ref("CorsRule")}}),
    "CorsUpsert": {
        **_object(
            {
                "cors_origin_list": {
                    "type": "array",
                    "items": _ref("CorsRule"),
                    "minItems": 1,
                    "maxItems": MAX_CORS_RULES,
                }
            }
        ),
        "additionalProperties": False,
    },
    "CorsRemove": {
        **_object(
            {
                "cors_origin_list": {
                    "type": "array",
                    "items": _CORS_PATTERN,
                    "minItems": 1,
                    "maxItems": MAX_CORS_RULES,
                }
            }
        ),
        "additionalProperties": False,
    },
    "CorsRemoved": _object(
        {"removed": _INT, "cors_origin_list": {"type": "array", "items": _ref("CorsRule")}}
    ),
    "Health": _object(
        {
            "status": {"enum": ["ok", "degraded"]},
            "upstream": {"type": "object"},
            "cache": {"type": "object"},
        }
    ),
}

_CACHE_HEADERS = {
    "X-Cache": {"schema": {"enum": ["HIT", "MISS", "STALE", "UPDATING"]}},
    "ETag": {"schema": _STRING},
    "Cache-Control": {"schema": _STRING},
}


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


def _path_param(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": _IDENTIFIER,
    }


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


def _csrf_header() -> dict[str, Any]:
    return {"name": "X-CSRFToken", "in": "header", "required": True, "schema": _STRING}


@cache
def openapi_document(prefix: str) -> dict[str, Any]:
    """The document for a blueprint mounted at ``prefix``."""
    paths = {
        "/v1/currencies": _cached_get("Exchange rates", _ref("Currencies"), []),
        "/v1/thrillpots/sources": _cached_get(
            "The brand's sources",
            {"type": "array", "items": _ref("Source")},
            [
                {
                    "name": "name",
                    "in": "query",
                    "required": False,
                    "description": "case-insensitive part of the source name; empty: all",
                    "schema": {
                        "type": "string",
                        "maxLength": MAX_NAME_FILTER_LENGTH,
                        "pattern": TEXT_PATTERN,
                    },
                }
            ],
        ),
        "/v1/thrillpots/instances/source/{source_id}": _cached_get(
            "The jackpot a source shows to the current player",
            _ref("Jackpot"),
            [_path_param("source_id")],
        ),
        "/v1/thrillpots/instances/{instance_id}/ticker": _cached_get(
            "The ticker of a jackpot instance", _ref("Ticker"), [_path_param("instance_id")]
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
                "summary": "Upstream status and cache figures",
                "responses": {"200": {"description": "OK", "content": _json(_ref("Health"))}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "flask-thrillconnect proxy", "version": __version__},
        "servers": [{"url": prefix or "/"}],
        "paths": paths,
        "components": {"schemas": _SCHEMAS},
    }
