"""The REST client of ThrillConnect: typed calls, bounded retries, safe errors.

:class:`ThrillConnectClient` has one typed method per upstream route. Each is built from an
:class:`UpstreamCall` (the path, query and schema of one request), which a caching proxy can
use directly: :attr:`UpstreamCall.key` to key its cache, :meth:`ThrillConnectClient.execute`
to fetch and validate on a miss, :meth:`UpstreamCall.dump` to re-dump the loaded value once.

Every identifier placed in a path is validated and percent-encoded before any request, so a
bad id never reaches the network. Every request has an explicit ``(connect, read)`` timeout
and does not follow redirects, except one hop on the same scheme, host and port.

The constructor checks its arguments with :mod:`flask_thrillconnect.config`'s checkers (those
of ``init_app``); the HTTP side of a call (the session, bounded bodies, redirects, error
answers) is :mod:`flask_thrillconnect.upstream_http`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode

import requests
from marshmallow import Schema, ValidationError

from . import metrics, validation
from .config import (
    DEFAULT_TIMEOUT,
    check_http_url,
    check_owner,
    check_service_token,
    check_timeout,
    check_ws_url,
    derive_ws_url,
)
from .errors import (
    ConfigurationError,
    InvalidRequest,
    UpstreamError,
    UpstreamUnavailable,
    is_upstream_failure,
)
from .limits import MAX_CORS_RULES
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
from .upstream_http import (
    MAX_BACKOFF,
    MAX_RETRIES,
    REDIRECT_STATUSES,
    FailureLog,
    error_for_answer,
    field_summary,
    new_session,
    read_body,
    redact,
    redirect_target,
    transport_errors,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "ThrillConnectClient",
    "UpstreamCall",
    # Re-exported from their homes (config and upstream_http) for existing imports.
    "derive_ws_url",
    "redact",
]

logger = logging.getLogger("flask_thrillconnect.client")

T = TypeVar("T")


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
    :raises ConfigurationError: when an argument is unusable: the checks of ``init_app``
        (:mod:`flask_thrillconnect.config`), naming the configuration key.
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
        self.base_url = check_http_url(base_url)
        self.ws_url = derive_ws_url(self.base_url) if ws_url is None else check_ws_url(ws_url)
        self.owner_id = check_owner(operator_id, brand_id)
        self.operator_id = operator_id
        self.brand_id = brand_id
        self._service_token = check_service_token(service_token)
        self.timeout = check_timeout(timeout)
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
        #: Logs this client's failed calls: one line each, at most one per kind per interval.
        self.failures = FailureLog(logging.getLogger("flask_thrillconnect.upstream"))

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
                    self._session = new_session(self.retries, self.backoff)
                    self._session_pid = pid
                session = self._session
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
        with metrics.upstream_request(call.kind):
            try:
                _, payload = self.fetch_json(call)
                try:
                    return call.load(payload)
                except ValidationError as error:
                    raise UpstreamUnavailable(
                        f"ThrillConnect sent an invalid response to {call.method} {call.path}: "
                        f"{field_summary(error.messages)}",
                        status=None,
                    ) from error
            except UpstreamError as exc:
                if not exc.logged and is_upstream_failure(exc):
                    # What the HTTP layer did not log: an answer that could not be used.
                    self.failures.log(exc, kind=call.kind)
                raise

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
        with transport_errors(what, self.failures, kind=call.kind):
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
                    if status in REDIRECT_STATUSES:
                        url = redirect_target(
                            response,
                            url,
                            home=self.base_url,
                            what=what,
                            may_follow=call.method == "GET" and not redirected,
                        )
                        params, redirected = None, True
                        continue
                    body = read_body(response, what)
                break
        if not 200 <= status < 300:
            raise error_for_answer(
                status,
                body,
                what,
                secret=self._service_token,
                failures=self.failures,
                kind=call.kind,
            )
        return status, body


def _bounded_list(values: Iterable[Any], field: str, limit: int = MAX_CORS_RULES) -> list[Any]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise InvalidRequest(f"{field} must be a list", field=field)
    items: list[Any] = []
    for item in values:
        if len(items) >= limit:
            raise InvalidRequest(f"{field} must hold at most {limit} items", field=field)
        items.append(item)
    return items
