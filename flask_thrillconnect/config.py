"""Configuration keys, their defaults, and the one place they are read and checked.

:func:`read_settings` reads an app's keys once, in ``init_app``. The checkers of the keys
the REST client takes as arguments (:func:`check_http_url`, :func:`check_ws_url`,
:func:`check_owner`, :func:`check_service_token`, :func:`check_timeout`) are public: the
client's constructor runs the same ones, so a client built without an app refuses exactly
what ``init_app`` refuses. Each raises :class:`~flask_thrillconnect.errors.ConfigurationError`
naming the key, and no message echoes a URL or a token.
"""

from __future__ import annotations

import difflib
import math
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from . import validation
from .errors import ConfigurationError, ConfigurationWarning, InvalidIdentifier

if TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "DEFAULTS",
    "DEFAULT_CACHE_TTL",
    "DEFAULT_TIMEOUT",
    "MAX_TIMEOUT",
    "REQUIRED",
    "Settings",
    "check_http_url",
    "check_owner",
    "check_service_token",
    "check_timeout",
    "check_ws_url",
    "derive_ws_url",
    "read_settings",
    "warn_unknown_keys",
]

#: Cache kinds and their default freshness in seconds.
DEFAULT_CACHE_TTL: Mapping[str, float] = {
    "ticker": 2,
    "jackpot": 5,
    "sources": 60,
    "currencies": 300,
}

#: ``(connect, read)`` seconds of every upstream REST call.
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10.0)
#: The longest connect or read timeout accepted, in seconds.
MAX_TIMEOUT = 300.0

#: Every key the extension reads, with its default. ``REQUIRED`` keys have none.
DEFAULTS: Mapping[str, Any] = {
    "THRILLCONNECT_WS_URL": None,
    "THRILLCONNECT_SERVICE_TOKEN": None,
    "THRILLCONNECT_URL_PREFIX": "/thrillconnect",
    "THRILLCONNECT_CACHE_TTL": dict(DEFAULT_CACHE_TTL),
    "THRILLCONNECT_STALE_TTL": 300,
    "THRILLCONNECT_TIMEOUT": DEFAULT_TIMEOUT,
    "THRILLCONNECT_ALLOWED_ORIGINS": None,
    "THRILLCONNECT_CACHE_MAX_ENTRIES": 10_000,
    "THRILLCONNECT_OPTIN_TIMEOUT": 5.0,
    "THRILLCONNECT_CSRF_MAX_AGE": 3600,
    "THRILLCONNECT_REDIS_URL": None,
    "THRILLCONNECT_REDIS_PREFIX": None,
    "THRILLCONNECT_STREAM_HOLDERS": 2,
    "THRILLCONNECT_CHECK_ON_START": False,
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
    #: Cluster mode when set: the shared cache and event stream live in this Redis.
    redis_url: str | None = None
    #: Namespace of every Redis key (ends with ``:``), so portals can share one Redis.
    redis_prefix: str = ""
    #: Cluster mode: processes holding the upstream service stream (1 or 2).
    stream_holders: int = 2
    #: ``init_app`` asks ThrillConnect whether the operator and brand have any source.
    check_on_start: bool = False

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
    warn_unknown_keys(app.config)
    for key, default in DEFAULTS.items():
        app.config.setdefault(key, default)
    config = app.config
    for key in REQUIRED:
        if not config.get(key):
            raise ConfigurationError(f"{key} is required: set it in app.config before init_app")

    url = check_http_url(config["THRILLCONNECT_URL"])
    ws_url = config["THRILLCONNECT_WS_URL"]
    operator_id = config["THRILLCONNECT_OPERATOR_ID"]
    brand_id = config["THRILLCONNECT_BRAND_ID"]
    check_owner(operator_id, brand_id)
    service_token = config["THRILLCONNECT_SERVICE_TOKEN"]
    return Settings(
        url=url,
        ws_url=check_ws_url(ws_url) if ws_url else derive_ws_url(url),
        operator_id=operator_id,
        brand_id=brand_id,
        # An empty value (an unset environment variable) means no token.
        service_token=check_service_token(None if service_token == "" else service_token),
        url_prefix=_url_prefix(config["THRILLCONNECT_URL_PREFIX"]),
        cache_ttl=_cache_ttl(config["THRILLCONNECT_CACHE_TTL"]),
        stale_ttl=_seconds(config["THRILLCONNECT_STALE_TTL"], "THRILLCONNECT_STALE_TTL"),
        timeout=check_timeout(_timeout_from_env(config["THRILLCONNECT_TIMEOUT"])),
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
        redis_url=_redis_url(config["THRILLCONNECT_REDIS_URL"]),
        redis_prefix=_redis_prefix(config["THRILLCONNECT_REDIS_PREFIX"], operator_id, brand_id),
        stream_holders=_stream_holders(config["THRILLCONNECT_STREAM_HOLDERS"]),
        check_on_start=_flag(
            config["THRILLCONNECT_CHECK_ON_START"], "THRILLCONNECT_CHECK_ON_START"
        ),
    )


def warn_unknown_keys(config: Mapping[str, Any]) -> None:
    """Warn (:class:`~flask_thrillconnect.errors.ConfigurationWarning`) about every
    ``THRILLCONNECT_*`` key the extension does not know, naming the closest known key: a
    mistyped key would otherwise be ignored without a word. Values are never shown."""
    known = [*REQUIRED, *DEFAULTS]
    for key in sorted(k for k in config if isinstance(k, str) and k.startswith("THRILLCONNECT_")):
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "see the configuration docs for the keys"
        warnings.warn(
            f"unknown configuration key {key} is ignored; {hint}",
            ConfigurationWarning,
            stacklevel=_caller_level(),
        )


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this package: the portal's own call of
    ``init_app`` (or of ``ThrillConnect(app)``)."""
    package = os.path.dirname(__file__)
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _redis_url(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError("THRILLCONNECT_REDIS_URL must be a redis:// URL")
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        # The URL may carry a password: never repeat it.
        raise ConfigurationError(
            "THRILLCONNECT_REDIS_URL must be a redis://, rediss:// or unix:// URL"
        )
    return value


def _redis_prefix(value: Any, operator_id: str, brand_id: str) -> str:
    if value is None or value == "":
        return f"thrillconnect:{operator_id}:{brand_id}:"
    if not isinstance(value, str) or len(value) > 128 or not value.isprintable():
        raise ConfigurationError(
            "THRILLCONNECT_REDIS_PREFIX must be printable text of at most 128 characters"
        )
    return value if value.endswith(":") else f"{value}:"


def _stream_holders(value: Any) -> int:
    holders = _positive_int(value, "THRILLCONNECT_STREAM_HOLDERS")
    if holders not in (1, 2):
        raise ConfigurationError(f"THRILLCONNECT_STREAM_HOLDERS must be 1 or 2, got {holders!r}")
    return holders


# ---------------------------------------------------------------------------------------------
# The checkers shared with the REST client
# ---------------------------------------------------------------------------------------------


def check_http_url(value: object, key: str = "THRILLCONNECT_URL") -> str:
    """Check a REST base URL: absolute ``http://`` or ``https://``, with a host and without
    credentials, a query or a fragment (they would end up in logs and messages).

    :returns: the URL without its trailing slash.
    :raises ConfigurationError: naming ``key``.
    """
    return _base_url(value, key, ("http", "https"))


def check_ws_url(value: object, key: str = "THRILLCONNECT_WS_URL") -> str:
    """Check a WebSocket base URL: as :func:`check_http_url`, with ``ws://`` or ``wss://``.

    :returns: the URL without its trailing slash.
    :raises ConfigurationError: naming ``key``.
    """
    return _base_url(value, key, ("ws", "wss"))


def derive_ws_url(url: object) -> str:
    """The WebSocket base URL of a REST base URL: ``http`` → ``ws``, ``https`` → ``wss``.

    :raises ConfigurationError: when ``url`` is refused by :func:`check_http_url`.
    """
    parts = urlsplit(check_http_url(url))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


def _base_url(value: object, key: str, schemes: tuple[str, ...]) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{key} must be a URL string")
    wanted = " or ".join(f"{scheme}://" for scheme in schemes)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        raise ConfigurationError(f"{key} must be an absolute {wanted} URL") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigurationError(f"{key} must be an absolute {wanted} URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(f"{key} must not contain credentials, a query or a fragment")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def check_owner(operator_id: object, brand_id: object) -> str:
    """Check the bare operator and brand ids (``thrilltech``, ``brand1``).

    Each is an identifier (:func:`flask_thrillconnect.validation.identifier`) without ``:``.

    :returns: the owner id ThrillConnect uses, ``thrilltech:brand1``.
    :raises ConfigurationError: naming ``THRILLCONNECT_OPERATOR_ID`` or
        ``THRILLCONNECT_BRAND_ID``.
    """
    try:
        return validation.owner_id(operator_id, brand_id)
    except InvalidIdentifier as error:
        key = f"THRILLCONNECT_{error.what.upper()}"
        raise ConfigurationError(f"{key} is invalid: {error.problem}") from None


def check_service_token(value: object) -> str | None:
    """Check the service token's shape (:func:`flask_thrillconnect.validation.opaque_token`).

    :returns: the token, or ``None`` when ``value`` is ``None`` (no token).
    :raises ConfigurationError: naming ``THRILLCONNECT_SERVICE_TOKEN``, never the token.
    """
    if value is None:
        return None
    try:
        return validation.opaque_token(value, "service_token")
    except InvalidIdentifier as error:
        raise ConfigurationError(
            f"THRILLCONNECT_SERVICE_TOKEN is invalid: {error.problem}"
        ) from None


def check_timeout(value: object, key: str = "THRILLCONNECT_TIMEOUT") -> tuple[float, float]:
    """Check a timeout: seconds for both connect and read, or a ``(connect, read)`` pair,
    each a number in (0, :data:`MAX_TIMEOUT`]. Strings are refused here:
    :func:`read_settings` turns the environment's ``"5"`` or ``"3.05,10"`` into numbers first.

    :raises ConfigurationError: naming ``key``.
    """
    values = value if isinstance(value, tuple | list) else (value, value)
    if len(values) != 2 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= MAX_TIMEOUT
        for v in values
    ):
        raise ConfigurationError(
            f"{key} must be seconds or (connect, read) seconds, each in (0, {MAX_TIMEOUT:g}]"
        )
    return float(values[0]), float(values[1])


# ---------------------------------------------------------------------------------------------
# The other keys
# ---------------------------------------------------------------------------------------------


def _timeout_from_env(value: Any) -> Any:
    """``"5"`` or ``"3.05,10"`` (values from the environment) as numbers; the rest unchanged,
    for :func:`check_timeout` to judge."""
    if isinstance(value, str):
        parts = [_number(part) for part in value.split(",")]
        return parts[0] if len(parts) == 1 else parts
    if isinstance(value, tuple | list):
        return [_number(part) for part in value]
    return value


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
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


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _flag(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE  # from the environment
    raise ConfigurationError(f"{key} must be true or false, got {value!r}")


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
