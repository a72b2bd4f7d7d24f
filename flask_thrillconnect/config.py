"""Configuration keys, their defaults, and the one place they are read and checked."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Flask

from .errors import ConfigurationError

#: Cache kinds and their default freshness in seconds.
DEFAULT_CACHE_TTL: Mapping[str, float] = {
    "ticker": 2,
    "jackpot": 5,
    "sources": 60,
    "currencies": 300,
}

#: Every key the extension reads, with its default. ``REQUIRED`` keys have none.
DEFAULTS: Mapping[str, Any] = {
    "THRILLCONNECT_WS_URL": None,
    "THRILLCONNECT_SERVICE_TOKEN": None,
    "THRILLCONNECT_URL_PREFIX": "/thrillconnect",
    "THRILLCONNECT_CACHE_TTL": dict(DEFAULT_CACHE_TTL),
    "THRILLCONNECT_STALE_TTL": 300,
    "THRILLCONNECT_TIMEOUT": (3.05, 10),
    "THRILLCONNECT_ALLOWED_ORIGINS": None,
    "THRILLCONNECT_CACHE_MAX_ENTRIES": 10_000,
    "THRILLCONNECT_OPTIN_TIMEOUT": 5.0,
    "THRILLCONNECT_CSRF_MAX_AGE": 3600,
}

REQUIRED = ("THRILLCONNECT_URL", "THRILLCONNECT_OPERATOR_ID", "THRILLCONNECT_BRAND_ID")


@dataclass(frozen=True, slots=True)
class Settings:
    """The checked configuration of one app; built once in ``init_app``."""

    url: str
    ws_url: str
    operator_id: str
    brand_id: str
    service_token: str | None
    url_prefix: str
    cache_ttl: Mapping[str, float]
    stale_ttl: float
    timeout: tuple[float, float]
    #: ``None`` means "the portal's own origin", worked out per request.
    allowed_origins: frozenset[str] | None
    cache_max_entries: int
    optin_timeout: float
    csrf_max_age: int

    @property
    def owner_id(self) -> str:
        """The joined ``operator:brand`` id ThrillConnect uses for owners."""
        return f"{self.operator_id}:{self.brand_id}"

    def __repr__(self) -> str:
        # The service token must never reach a log line, even through a repr.
        token = "set" if self.service_token else None
        return (
            f"Settings(url={self.url!r}, operator_id={self.operator_id!r}, "
            f"brand_id={self.brand_id!r}, service_token={token!r})"
        )


def read_settings(app: Flask) -> Settings:
    """Apply defaults to ``app.config`` and return the checked settings.

    :raises ConfigurationError: naming the key that is missing or wrong.
    """
    for key, default in DEFAULTS.items():
        app.config.setdefault(key, default)
    config = app.config
    for key in REQUIRED:
        if not config.get(key):
            raise ConfigurationError(f"{key} is required: set it in app.config before init_app")

    url = _http_url(config["THRILLCONNECT_URL"], "THRILLCONNECT_URL")
    ws_url = config["THRILLCONNECT_WS_URL"] or _derive_ws_url(url)
    return Settings(
        url=url,
        ws_url=_ws_url(ws_url),
        operator_id=_bare_id(config["THRILLCONNECT_OPERATOR_ID"], "THRILLCONNECT_OPERATOR_ID"),
        brand_id=_bare_id(config["THRILLCONNECT_BRAND_ID"], "THRILLCONNECT_BRAND_ID"),
        service_token=_optional_str(
            config["THRILLCONNECT_SERVICE_TOKEN"], "THRILLCONNECT_SERVICE_TOKEN"
        ),
        url_prefix=_url_prefix(config["THRILLCONNECT_URL_PREFIX"]),
        cache_ttl=_cache_ttl(config["THRILLCONNECT_CACHE_TTL"]),
        stale_ttl=_seconds(config["THRILLCONNECT_STALE_TTL"], "THRILLCONNECT_STALE_TTL"),
        timeout=_timeout(config["THRILLCONNECT_TIMEOUT"]),
        allowed_origins=_origins(config["THRILLCONNECT_ALLOWED_ORIGINS"]),
        cache_max_entries=_positive_int(
            config["THRILLCONNECT_CACHE_MAX_ENTRIES"], "THRILLCONNECT_CACHE_MAX_ENTRIES"
        ),
        optin_timeout=_seconds(
            config["THRILLCONNECT_OPTIN_TIMEOUT"], "THRILLCONNECT_OPTIN_TIMEOUT", positive=True
        ),
        csrf_max_age=_positive_int(
            config["THRILLCONNECT_CSRF_MAX_AGE"], "THRILLCONNECT_CSRF_MAX_AGE"
        ),
    )


def _http_url(value: Any, key: str) -> str:
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{key} must be an http:// or https:// URL, got {value!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _ws_url(value: Any) -> str:
    parts = urlsplit(str(value))
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigurationError(
            f"THRILLCONNECT_WS_URL must be a ws:// or wss:// URL, got {value!r}"
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _derive_ws_url(http_url: str) -> str:
    parts = urlsplit(http_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


def _bare_id(value: Any, key: str) -> str:
    text = str(value)
    if ":" in text or "/" in text or not text.isprintable() or len(text) > 128:
        raise ConfigurationError(f"{key} must be a bare id (no ':' or '/'), got {value!r}")
    return text


def _optional_str(value: Any, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{key} must be a string")
    return value


def _url_prefix(value: Any) -> str:
    text = str(value or "").rstrip("/")
    # The blueprint answers every unknown URL under its prefix with a JSON 404: at the
    # root it would take over the portal's own 404 pages.
    if not text.startswith("/") or len(text) < 2:
        raise ConfigurationError(
            f"THRILLCONNECT_URL_PREFIX must be a path such as '/thrillconnect', got {value!r}"
        )
    return text


def _seconds(value: Any, key: str, *, positive: bool = False) -> float:
    # Strings are welcome: values read from the environment are strings.
    try:
        if isinstance(value, bool):
            raise TypeError("a boolean is not a number of seconds")
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise ConfigurationError(f"{key} must be a finite number of seconds > 0, got {value!r}")
    return number


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # from the environment
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{key} must be a whole number ≥ 1, got {value!r}")
    return value


def _cache_ttl(value: Any) -> Mapping[str, float]:
    if not isinstance(value, Mapping):
        raise ConfigurationError("THRILLCONNECT_CACHE_TTL must be a mapping of kind to seconds")
    unknown = set(value) - set(DEFAULT_CACHE_TTL)
    if unknown:
        raise ConfigurationError(
            f"THRILLCONNECT_CACHE_TTL has unknown kinds {sorted(unknown)}; "
            f"known: {sorted(DEFAULT_CACHE_TTL)}"
        )
    merged = {**DEFAULT_CACHE_TTL, **value}
    return {
        kind: _seconds(seconds, f"THRILLCONNECT_CACHE_TTL[{kind!r}]")
        for kind, seconds in merged.items()
    }


def _timeout(value: Any) -> tuple[float, float]:
    if isinstance(value, str):
        # From the environment: "5" or "3.05,10".
        parts = [part.strip() for part in value.split(",")]
        value = parts if len(parts) != 1 else (parts[0], parts[0])
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigurationError("THRILLCONNECT_TIMEOUT must be seconds or (connect, read) seconds")
    connect, read = (_seconds(v, "THRILLCONNECT_TIMEOUT", positive=True) for v in value)
    return connect, read


def _origins(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    origins = set()
    for origin in value:
        parts = urlsplit(str(origin))
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigurationError(
                f"THRILLCONNECT_ALLOWED_ORIGINS entries are origins like "
                f"'https://casino.example', got {origin!r}"
            )
        origins.add(f"{parts.scheme}://{parts.netloc}".lower())
    return frozenset(origins)
