"""The REST client of ThrillConnect: typed calls, bounded retries, safe errors.

:class:`ThrillConnectClient` has one typed method per upstream route. Each is built from an
:class:`UpstreamCall` (the path, query and schema of one request), which a caching proxy can
use directly: :attr:`UpstreamCall.key` to key its cache, :meth:`ThrillConnectClient.execute`
to fetch and validate on a miss, :meth:`UpstreamCall.dump` to re-dump the loaded value once.

Every identifier placed in a path is validated and percent-encoded before any request, so a
bad id never reaches the network. Every request has an explicit ``(connect, read)`` timeout
and does not follow redirects, except one hop on the same scheme, host and port.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urljoin, urlsplit, urlunsplit

import requests
import urllib3.exceptions
from marshmallow import Schema, ValidationError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import __version__, validation
from .errors import (
    ConfigurationError,
    InvalidIdentifier,
    InvalidRequest,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    upstream_error_for_status,
)
from .limits import MAX_CORS_RULES, MAX_ERROR_BODY_BYTES, MAX_RESPONSE_BYTES
from .models import (
    CorsList,
    CorsListSchema,
    CorsOrigin,
    CorsOriginSchema,
    CorsRemoval,
    CorsRemovalSchema,
    CorsRemoveBody,
    CorsUpsertBody,
    Currencies,
    CurrenciesSchema,
    Health,
    HealthSchema,
    Jackpot,
    JackpotSchema,
    Source,
    SourceSchema,
    Ticker,
    TickerSchema,
    parse_json,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "ThrillConnectClient",
    "UpstreamCall",
    "derive_ws_url",
    "redact",
]

logger = logging.getLogger("flask_thrillconnect.client")

T = TypeVar("T")
Timeout = tuple[float, float]

DEFAULT_TIMEOUT: Timeout = (3.05, 10.0)
#: Statuses a GET is retried on: the platform or its load balancer is briefly unavailable.
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_RETRIES = 10
#: Longest single back-off sleep between retries (urllib3's default is 120 s).
MAX_BACKOFF = 2.0
_MAX_UPSTREAM_TEXT = 200
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_TOKEN_IN_QUERY = re.compile(r"(?i)(token=)[^&#\s\"']*")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"']+")


def redact(url: str) -> str:
    """``url`` (or any text) with every ``token=…`` value replaced by ``token=***``.

    Use it before logging a WebSocket URL: tokens travel in its query string.
    """
    return _BEARER.sub(r"\1***", _TOKEN_IN_QUERY.sub(r"\1***", url))


def derive_ws_url(base_url: str) -> str:
    """The WebSocket base URL of a REST base URL: ``http`` → ``ws``, ``https`` → ``wss``.

    :raises ConfigurationError: when ``base_url`` is not an http(s) URL.
    """
    parts = urlsplit(_check_base_url(base_url, "THRILLCONNECT_URL"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


def _check_base_url(url: object, key: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{key} must be a URL string")
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigurationError(f"{key} must be an absolute {' or '.join(schemes)} URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        # Credentials or a query in a base URL would end up in logs and error messages.
        raise ConfigurationError(f"{key} must not contain credentials, a query or a fragment")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default_port


def _check_timeout(timeout: object) -> Timeout:
    values = timeout if isinstance(timeout, tuple | list) else (timeout, timeout)
    if len(values) != 2 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 300 for v in values
    ):
        raise ConfigurationError(
            "THRILLCONNECT_TIMEOUT must be a number or a (connect, read) pair of seconds in "
            "(0, 300]"
        )
    return float(values[0]), float(values[1])


@dataclass(frozen=True, slots=True)
class UpstreamCall(Generic[T]):
    """One upstream request, described before it is sent.

    :param kind: what is fetched (``currencies``, ``sources``, ``jackpot``, ``ticker``,
        ``health``, ``cors``): a cache can pick its TTL with it.
    :param path: the path below the base URL, its segments already validated and encoded.
    :param schema: loads the answer (and dumps the loaded value back to the wire shape).
    :param params: query parameters, in a fixed order.
    :param many: the answer is a JSON array of ``schema`` objects.
    :param method: the HTTP method.
    :param body: a JSON body, for ``PUT``/``DELETE``.
    :param authenticated: send the service token.
    """

    kind: str
    path: str
    schema: Schema
    params: tuple[tuple[str, str], ...] = ()
    many: bool = False
    method: str = "GET"
    body: Any = None
    authenticated: bool = False

    @property
    def key(self) -> str:
        """The path and query of the call: stable, usable as (part of) a cache key."""
        return f"{self.path}?{urlencode(self.params)}" if self.params else self.path

    def load(self, payload: Any) -> T:
        """Load a parsed JSON answer into typed objects.

        :raises marshmallow.ValidationError: when it does not have the expected shape.
        """
        loaded: T = self.schema.load(payload, many=self.many)
        return loaded

    def dump(self, value: T) -> Any:
        """The upstream wire shape of a loaded value (JSON-ready)."""
        return self.schema.dump(value, many=self.many)


_CURRENCIES = CurrenciesSchema()
_SOURCES = SourceSchema()
_JACKPOT = JackpotSchema()
_TICKER = TickerSchema()
_HEALTH = HealthSchema()
_CORS_LIST = CorsListSchema()
_CORS_REMOVAL = CorsRemovalSchema()
_CORS_ORIGIN = CorsOriginSchema()
_CORS_UPSERT_BODY = CorsUpsertBody()
_CORS_REMOVE_BODY = CorsRemoveBody()


class ThrillConnectClient:
    """A typed client of ThrillConnect's REST API for one operator and brand.

    :param base_url: the REST base URL (``https://thrillconnect.example``); routes are
        under ``/v1`` below it.
    :param operator_id: the bare operator id (``thrilltech``).
    :param brand_id: the bare brand id (``brand1``).
    :param service_token: the service JWT, needed for the CORS calls and the service stream.
        Never logged, never put in an exception message.
    :param timeout: ``(connect, read)`` seconds for every request (or one number for both).
    :param retries: how many times a GET is retried on a connection error or a 502/503/504.
    :param backoff: urllib3's ``backoff_factor`` between retries.
    :param ws_url: the WebSocket base URL; derived from ``base_url`` when not given.
    :raises ConfigurationError: when an argument is unusable.
    """

    def __init__(
        self,
        base_url: str,
        *,
        operator_id: str,
        brand_id: str,
        service_token: str | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = 2,
        backoff: float = 0.1,
        ws_url: str | None = None,
    ) -> None:
        self.base_url = _check_base_url(base_url, "THRILLCONNECT_URL")
        self.ws_url = (
            derive_ws_url(self.base_url)
            if ws_url is None
            else _check_base_url(ws_url, "THRILLCONNECT_WS_URL", ("ws", "wss"))
        )
        try:
            self.owner_id = validation.owner_id(operator_id, brand_id)
        except InvalidIdentifier as error:
            key = f"THRILLCONNECT_{error.what.upper()}"
            raise ConfigurationError(f"{key} is invalid: {error.problem}") from None
        self.operator_id = operator_id
        self.brand_id = brand_id
        if service_token is not None:
            try:
                validation.opaque_token(service_token, "service_token")
            except InvalidIdentifier as error:
                raise ConfigurationError(
                    f"THRILLCONNECT_SERVICE_TOKEN is invalid: {error.problem}"
                ) from None
        self._service_token = service_token
        self.timeout = _check_timeout(timeout)
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise ConfigurationError("retries must be an integer")
        if not 0 <= retries <= MAX_RETRIES:
            raise ConfigurationError(f"retries must be between 0 and {MAX_RETRIES}")
        if not isinstance(backoff, int | float) or not 0 <= backoff <= MAX_BACKOFF:
            raise ConfigurationError(f"backoff must be between 0 and {MAX_BACKOFF} seconds")
        self.retries = retries
        self.backoff = float(backoff)
        self._session_lock = threading.Lock()
        self._session: requests.Session | None = None
        self._session_pid: int | None = None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.base_url} operator={self.operator_id} "
            f"brand={self.brand_id}>"
        )

    @property
    def has_service_token(self) -> bool:
        """Whether a service token is configured (the token itself is never exposed)."""
        return self._service_token is not None

    # ---------------------------------------------------------------------------------------
    # The session
    # ---------------------------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        """This process's :class:`requests.Session`, created on first use.

        Recreated when the process id changed: a session (and its sockets) inherited over
        ``fork`` (gunicorn workers) must not be shared with the parent.
        """
        pid = os.getpid()
        session = self._session
        if session is None or self._session_pid != pid:
            with self._session_lock:
                if self._session is None or self._session_pid != pid:
                    self._session = self._new_session()
                    self._session_pid = pid
                session = self._session
        return session

    def _new_session(self) -> requests.Session:
        retry = Retry(
            total=self.retries,
            connect=self.retries,
            # A read error may mean the request was processed: never resend it.
            read=False,
            status=self.retries,
            other=0,
            allowed_methods=frozenset({"GET"}),
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self.backoff,
            backoff_max=MAX_BACKOFF,
            raise_on_status=False,
            raise_on_redirect=False,
            # An upstream Retry-After could ask for minutes; our back-off stays bounded.
            respect_retry_after_header=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=32)
        session = requests.Session()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = f"flask-thrillconnect/{__version__}"
        session.headers["Accept"] = "application/json"
        return session

    def close(self) -> None:
        """Close this process's session and its pooled connections."""
        with self._session_lock:
            session, self._session = self._session, None
        if session is not None and self._session_pid == os.getpid():
            session.close()

    # ---------------------------------------------------------------------------------------
    # Calls (what to fetch)
    # ---------------------------------------------------------------------------------------

    def currencies_call(self) -> UpstreamCall[Currencies]:
        """``GET /v1/currencies``."""
        return UpstreamCall("currencies", "/v1/currencies", _CURRENCIES)

    def sources_call(self, name: str | None = None) -> UpstreamCall[list[Source]]:
        """``GET /v1/thrillpots/sources?owner_id=<op:brand>[&name=…]``.

        :raises InvalidIdentifier: when ``name`` is not an acceptable filter.
        """
        params = [("owner_id", self.owner_id)]
        name_filter = validation.source_name_filter(name)
        if name_filter is not None:
            params.append(("name", name_filter))
        return UpstreamCall(
            "sources", "/v1/thrillpots/sources", _SOURCES, params=tuple(params), many=True
        )

    def jackpot_call(
        self,
        source_id: str,
        *,
        player_id: str | None = None,
        country_code: str | None = None,
        segments: Iterable[str] = (),
    ) -> UpstreamCall[Jackpot]:
        """``GET /v1/thrillpots/instances/source/{source_id}/brand/{op:brand}``.

        :raises InvalidIdentifier: when an argument is not acceptable.
        """
        path = (
            f"/v1/thrillpots/instances/source/{validation.quote_segment(source_id, 'source_id')}"
            f"/brand/{validation.quote_segment(self.owner_id, 'brand_id')}"
        )
        params: list[tuple[str, str]] = []
        if player_id is not None:
            params.append(("player_id", validation.identifier(player_id, "player_id")))
        if country_code is not None:
            params.append(("country_code", validation.country_code(country_code)))
        checked_segments = validation.segments(segments)
        if checked_segments:
            params.append(("segments", ",".join(checked_segments)))
        return UpstreamCall("jackpot", path, _JACKPOT, params=tuple(params))

    def ticker_call(self, instance_id: str) -> UpstreamCall[Ticker]:
        """``GET /v1/thrillpots/instances/{instance_id}/ticker``.

        :raises InvalidIdentifier: when ``instance_id`` is not acceptable.
        """
        segment = validation.quote_segment(instance_id, "instance_id")
        return UpstreamCall("ticker", f"/v1/thrillpots/instances/{segment}/ticker", _TICKER)

    def health_call(self) -> UpstreamCall[Health]:
        """``GET /health``."""
        return UpstreamCall("health", "/health", _HEALTH)

    # ---------------------------------------------------------------------------------------
    # Typed methods
    # ---------------------------------------------------------------------------------------

    def currencies(self) -> Currencies:
        """The exchange rates."""
        return self.execute(self.currencies_call())

    def sources(self, name: str | None = None) -> list[Source]:
        """The sources of this operator's brand, optionally filtered by name."""
        return self.execute(self.sources_call(name))

    def jackpot_for_source(
        self,
        source_id: str,
        *,
        player_id: str | None = None,
        country_code: str | None = None,
        segments: Iterable[str] = (),
    ) -> Jackpot:
        """The jackpot ThrillConnect picks for a source (and player, country, segments)."""
        return self.execute(
            self.jackpot_call(
                source_id, player_id=player_id, country_code=country_code, segments=segments
            )
        )

    def ticker(self, instance_id: str) -> Ticker:
        """The live values of a jackpot instance."""
        return self.execute(self.ticker_call(instance_id))

    def health(self) -> Health:
        """ThrillConnect's health answer (its version)."""
        return self.execute(self.health_call())

    def cors_list(self) -> list[CorsOrigin]:
        """The CORS origin rules (needs the service token)."""
        call: UpstreamCall[CorsList] = UpstreamCall(
            "cors", "/v1/cors", _CORS_LIST, authenticated=True
        )
        return list(self.execute(call).rules)

    def cors_upsert(self, rules: Iterable[CorsOrigin | Mapping[str, Any]]) -> list[CorsOrigin]:
        """Add or replace (by pattern) CORS origin rules; answers the whole list after it.

        :param rules: :class:`CorsOrigin` objects or ``{"pattern", "match_mode"}`` mappings.
        :raises InvalidRequest: when a rule is invalid (before any request).
        """
        items = [
            _CORS_ORIGIN.dump(rule) if isinstance(rule, CorsOrigin) else rule
            for rule in _bounded_list(rules, "rules")
        ]
        try:
            body = _CORS_UPSERT_BODY.load({"cors_origin_list": items})
        except ValidationError as error:
            raise InvalidRequest("invalid CORS rule", field="cors_origin_list") from error
        call: UpstreamCall[CorsList] = UpstreamCall(
            "cors", "/v1/cors", _CORS_LIST, method="PUT", body=body, authenticated=True
        )
        return list(self.execute(call).rules)

    def cors_remove(self, patterns: Iterable[str]) -> tuple[int, list[CorsOrigin]]:
        """Remove CORS rules by pattern.

        :returns: ``(how many were removed, the rules that remain)``.
        :raises InvalidRequest: when a pattern is invalid (before any request).
        """
        try:
            body = _CORS_REMOVE_BODY.load({"cors_origin_list": _bounded_list(patterns, "patterns")})
        except ValidationError as error:
            raise InvalidRequest("invalid CORS pattern", field="cors_origin_list") from error
        call: UpstreamCall[CorsRemoval] = UpstreamCall(
            "cors", "/v1/cors", _CORS_REMOVAL, method="DELETE", body=body, authenticated=True
        )
        removal = self.execute(call)
        return removal.removed, list(removal.rules)

    # ---------------------------------------------------------------------------------------
    # WebSocket URLs
    # ---------------------------------------------------------------------------------------

    def service_stream_url(self) -> str:
        """The service event stream URL (the service token in its query: log it redacted).

        :raises ConfigurationError: without a service token.
        """
        token = self._require_service_token()
        return f"{self.ws_url}/v1/events/service?{urlencode({'token': token})}"

    def player_stream_url(self, token: str, currency: str) -> str:
        """A player's event stream URL (the wallet token in its query: log it redacted).

        :raises InvalidIdentifier: when the token or currency is not acceptable.
        """
        query = urlencode(
            {
                "token": validation.opaque_token(token, "token"),
                "currency": validation.currency_code(currency),
            }
        )
        operator = quote(self.operator_id, safe="")
        brand = quote(self.brand_id, safe="")
        return f"{self.ws_url}/v1/events/{operator}/{brand}?{query}"

    # ---------------------------------------------------------------------------------------
    # Sending
    # ---------------------------------------------------------------------------------------

    def execute(self, call: UpstreamCall[T]) -> T:
        """Send ``call`` and load its answer through the call's schema.

        :raises UpstreamError: (a subclass) when ThrillConnect fails, answers an error or
            answers something that does not load.
        """
        _, payload = self.fetch_json(call)
        try:
            return call.load(payload)
        except ValidationError as error:
            raise UpstreamUnavailable(
                f"ThrillConnect sent an invalid response to {call.method} {call.path}: "
                f"{_field_summary(error.messages)}",
                status=None,
            ) from error

    def fetch_json(self, call: UpstreamCall[Any]) -> tuple[int, Any]:
        """Send ``call`` and return ``(status, parsed JSON)`` of its 2xx answer.

        :raises UpstreamError: (a subclass) for non-2xx answers, timeouts, connection
            errors, refused redirects and bodies that are not JSON.
        """
        status, body = self._send(call)
        try:
            return status, parse_json(body)
        except ValueError as error:
            raise UpstreamUnavailable(
                f"ThrillConnect sent an invalid response to {call.method} {call.path}: not JSON",
                status=status,
            ) from error

    def _require_service_token(self) -> str:
        if self._service_token is None:
            raise ConfigurationError(
                "THRILLCONNECT_SERVICE_TOKEN is required for this call but is not configured"
            )
        return self._service_token

    def _send(self, call: UpstreamCall[Any]) -> tuple[int, bytes]:
        headers = {}
        if call.authenticated:
            headers["Authorization"] = f"Bearer {self._require_service_token()}"
        url = self.base_url + call.path
        params: list[tuple[str, str]] | None = list(call.params) or None
        what = f"{call.method} {call.path}"
        started = time.monotonic()
        redirected = False
        try:
            while True:
                response = self.session.request(
                    call.method,
                    url,
                    params=params,
                    json=call.body,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                    stream=True,
                )
                with response:
                    status = response.status_code
                    logger.debug(
                        "%s -> %d (%.0f ms)", what, status, (time.monotonic() - started) * 1000
                    )
                    if status in _REDIRECT_STATUSES:
                        target = self._redirect_target(url, response, call, redirected)
                        url, params, redirected = target, None, True
                        continue
                    body = _read_body(response, what)
                break
        except requests.Timeout as error:
            raise UpstreamTimeout(f"ThrillConnect did not answer {what} in time") from error
        except requests.ConnectionError as error:
            if _caused_by_read_timeout(error):
                raise UpstreamTimeout(f"ThrillConnect did not answer {what} in time") from error
            raise UpstreamUnavailable(f"could not reach ThrillConnect for {what}") from error
        except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
            raise UpstreamUnavailable(f"ThrillConnect request {what} failed") from error
        if not 200 <= status < 300:
            raise self._error_for(status, body, what)
        return status, body

    def _redirect_target(
        self, url: str, response: requests.Response, call: UpstreamCall[Any], redirected: bool
    ) -> str:
        """Where a 3xx may be followed to, or the error refusing it."""
        location = response.headers.get("Location", "")
        target = urljoin(url, location) if location else ""
        allowed = (
            not redirected
            and call.method == "GET"
            and bool(target)
            and _origin(target) == _origin(self.base_url)
        )
        if not allowed:
            raise UpstreamUnavailable(
                f"ThrillConnect redirected {call.method} {call.path} elsewhere; redirect refused",
                status=response.status_code,
            )
        return target

    def _error_for(self, status: int, body: bytes, what: str) -> UpstreamError:
        code, text = _upstream_error_fields(body)
        text = self._scrub(text) if text else None
        code = self._scrub(code) if code else None
        message = f"ThrillConnect answered {status} to {what}"
        if text:
            message = f"{message}: {text}"
        return upstream_error_for_status(status, message, error=code)

    def _scrub(self, text: str) -> str:
        """Remove anything token-like from upstream text before it goes in a message."""
        if self._service_token:
            text = text.replace(self._service_token, "***")
        return redact(text)


def _bounded_list(values: Iterable[Any], field: str, limit: int = MAX_CORS_RULES) -> list[Any]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise InvalidRequest(f"{field} must be a list", field=field)
    items: list[Any] = []
    for item in values:
        if len(items) >= limit:
            raise InvalidRequest(f"{field} must hold at most {limit} items", field=field)
        items.append(item)
    return items


def _read_body(response: requests.Response, what: str) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise UpstreamUnavailable(
            f"ThrillConnect answer to {what} is too large", status=response.status_code
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=65536):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise UpstreamUnavailable(
                f"ThrillConnect answer to {what} is too large", status=response.status_code
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _caused_by_read_timeout(error: BaseException) -> bool:
    # requests wraps a read timeout while streaming the body in a plain ConnectionError.
    return any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in error.args)


def _printable(text: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    if len(cleaned) > _MAX_UPSTREAM_TEXT:
        cleaned = cleaned[: _MAX_UPSTREAM_TEXT - 1] + "…"
    return cleaned


def _upstream_error_fields(body: bytes) -> tuple[str | None, str | None]:
    """The ``error`` code and ``message`` of an upstream error body, if it has them."""
    try:
        payload = parse_json(body[:MAX_ERROR_BODY_BYTES])
    except ValueError:
        return None, None
    if not isinstance(payload, dict):
        return None, None
    code, message = payload.get("error"), payload.get("message")
    return (
        _printable(code) if isinstance(code, str) and code else None,
        _printable(message) if isinstance(message, str) and message else None,
    )


def _field_summary(messages: Any, limit: int = 300) -> str:
    """Name the fields that failed to load (never their values)."""
    paths: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key))
        elif path and path not in paths:
            paths.append(path)

    walk(messages, "")
    text = "invalid fields " + ", ".join(paths) if paths else "unexpected shape"
    return text if len(text) <= limit else text[: limit - 1] + "…"
