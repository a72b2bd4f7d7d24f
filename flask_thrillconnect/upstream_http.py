"""The HTTP side of the REST client: the session, bounded bodies, redirects and error answers.

Nothing here knows a route or a schema; :class:`~flask_thrillconnect.client.ThrillConnectClient`
builds its calls and sends them through these helpers. Every message they raise names the
method and path of the call (``what``), never a full URL, a query string or a token.

A failed call is logged once, by the client's :class:`FailureLog`
(``flask_thrillconnect.upstream``, event ``upstream_failure``: see
:mod:`~flask_thrillconnect.log_events`), at most one line per kind of failure every
:data:`FAILURE_LOG_INTERVAL` seconds. urllib3's own
"Retrying (…)" warning, one per retry, is dropped for the sessions made here (and only for
them: a filter on ``urllib3.connectionpool`` recognises our retry policy).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import __version__
from .errors import (
    ThrillConnectError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    is_upstream_failure,
    upstream_error_for_status,
)
from .limits import MAX_ERROR_BODY_BYTES, MAX_RESPONSE_BYTES
from .log_events import RateLimit, log_event
from .models import parse_json

__all__ = [
    "FAILURE_LOG_INTERVAL",
    "MAX_BACKOFF",
    "MAX_RETRIES",
    "REDIRECT_STATUSES",
    "RETRY_STATUSES",
    "FailureLog",
    "error_for_answer",
    "field_summary",
    "new_session",
    "read_body",
    "redact",
    "redirect_target",
    "transport_errors",
]

#: Statuses a GET is retried on: the platform or its load balancer is briefly unavailable.
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_RETRIES = 10
#: Longest single back-off sleep between retries (urllib3's default is 120 s).
MAX_BACKOFF = 2.0
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_UPSTREAM_TEXT = 200
_TOKEN_IN_QUERY = re.compile(r"(?i)(token=)[^&#\s\"']*")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"']+")


#: Seconds during which further failures of the same kind are counted, not logged.
FAILURE_LOG_INTERVAL = 10.0


class FailureLog:
    """Logs failures at most once per kind (the exception's class) and ``interval`` seconds;
    the next line says how many were held back. Marks each error it saw ``logged``.

    Each line is an ``upstream_failure`` event (:func:`~.log_events.log_event`) with the
    fields ``kind`` (what was fetched: ``ticker``…, ``-`` when unknown), ``error`` (the
    exception's class), ``status`` (the upstream HTTP status, ``-`` without an answer) and
    ``suppressed`` (failures of that class held back since the previous line).

    :param logger: where the lines go (at WARNING).
    :param clock: monotonic seconds.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = FAILURE_LOG_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._limit = RateLimit(interval, clock=clock)

    def log(self, exc: ThrillConnectError, *, kind: str | None = None) -> None:
        """One line for ``exc`` unless one of its class was logged within ``interval``.

        :param kind: what the failed call fetched (an :class:`~.client.UpstreamCall`'s kind).
        """
        exc.logged = True
        error = type(exc).__name__
        held = self._limit.admit(error)
        if held is None:
            return
        more = f" ({held} more like it in the last {self.interval:g} s)" if held else ""
        # The message names the call (method and path), never a query string or a token.
        log_event(
            self.logger,
            logging.WARNING,
            "upstream_failure",
            f"{redact(str(exc))}{more}",
            kind=kind,
            error=error,
            status=getattr(exc, "status", None),
            suppressed=held,
        )


class _QuietRetry(Retry):
    """The retry policy of our sessions; urllib3's warning about each retry is dropped (see
    :class:`_DropOurRetryWarnings`): the failure, if the retries do not help, is logged once."""


class _DropOurRetryWarnings(logging.Filter):
    """Drops urllib3's "Retrying (Retry(…)) after connection broken by …" when the retry
    policy is ours; every other urllib3 record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, tuple) and args and isinstance(args[0], _QuietRetry))


def _install_retry_filter() -> None:
    urllib3_logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _DropOurRetryWarnings) for f in urllib3_logger.filters):
        urllib3_logger.addFilter(_DropOurRetryWarnings())


_install_retry_filter()


def redact(url: str) -> str:
    """``url`` (or any text) with every ``token=…`` value replaced by ``token=***``.

    Use it before logging a WebSocket URL: tokens travel in its query string.
    """
    return _BEARER.sub(r"\1***", _TOKEN_IN_QUERY.sub(r"\1***", url))


def new_session(retries: int, backoff: float) -> requests.Session:
    """A session that retries only GETs, on connection errors and 502/503/504.

    :param retries: how many times a GET is retried (0 to :data:`MAX_RETRIES`).
    :param backoff: urllib3's ``backoff_factor``; no sleep exceeds :data:`MAX_BACKOFF`.
    """
    retry = _QuietRetry(
        total=retries,
        connect=retries,
        # A read error may mean the request was processed: never resend it.
        read=False,
        status=retries,
        other=0,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff,
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


@contextmanager
def transport_errors(
    what: str, failures: FailureLog | None = None, *, kind: str | None = None
) -> Iterator[None]:
    """Raise what requests and urllib3 raise inside as the package's upstream errors, logged
    to ``failures`` when given (as a failure of a call of ``kind``).

    :raises UpstreamTimeout: no answer in time (also while streaming the body).
    :raises UpstreamUnavailable: no connection, or any other transport failure.
    """

    def logged(exc: UpstreamError) -> UpstreamError:
        if failures is not None:
            failures.log(exc, kind=kind)
        return exc

    try:
        yield
    except requests.Timeout as error:
        raise logged(UpstreamTimeout(f"ThrillConnect did not answer {what} in time")) from error
    except requests.ConnectionError as error:
        if _caused_by_read_timeout(error):
            raise logged(UpstreamTimeout(f"ThrillConnect did not answer {what} in time")) from error
        raise logged(UpstreamUnavailable(f"could not reach ThrillConnect for {what}")) from error
    except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
        raise logged(UpstreamUnavailable(f"ThrillConnect request {what} failed")) from error


def _caused_by_read_timeout(error: BaseException) -> bool:
    # requests wraps a read timeout while streaming the body in a plain ConnectionError.
    return any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in error.args)


def read_body(response: requests.Response, what: str) -> bytes:
    """The body of a streamed ``response``, at most ``MAX_RESPONSE_BYTES`` of it.

    :raises UpstreamUnavailable: when the body is (or says it is) larger.
    """
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


def redirect_target(
    response: requests.Response, url: str, *, home: str, what: str, may_follow: bool
) -> str:
    """Where the 3xx ``response`` to ``url`` may be followed: only on ``home``'s origin.

    :param home: the base URL whose scheme, host and port the target must share.
    :param may_follow: ``False`` refuses any redirect (not a GET, or already redirected once).
    :raises UpstreamUnavailable: when the redirect is refused.
    """
    location = response.headers.get("Location", "")
    target = urljoin(url, location) if location else ""
    if not (may_follow and target and _origin(target) == _origin(home)):
        raise UpstreamUnavailable(
            f"ThrillConnect redirected {what} elsewhere; redirect refused",
            status=response.status_code,
        )
    return target


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default_port


def error_for_answer(
    status: int,
    body: bytes,
    what: str,
    *,
    secret: str | None,
    failures: FailureLog | None = None,
    kind: str | None = None,
) -> UpstreamError:
    """The exception of the package's family that stands for a non-2xx answer.

    Its message carries the upstream ``message`` (and its ``error`` code), shortened, made
    printable and scrubbed of ``secret`` and of anything token-like. A failure (5xx) is
    logged to ``failures`` when given (as a failure of a call of ``kind``).
    """
    code, text = _upstream_error_fields(body)

    def scrub(value: str) -> str:
        if secret:
            value = value.replace(secret, "***")
        return redact(value)

    message = f"ThrillConnect answered {status} to {what}"
    if text:
        message = f"{message}: {scrub(text)}"
    error = upstream_error_for_status(status, message, error=scrub(code) if code else None)
    if failures is not None and is_upstream_failure(error):
        failures.log(error, kind=kind)
    return error


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


def _printable(text: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    if len(cleaned) > _MAX_UPSTREAM_TEXT:
        cleaned = cleaned[: _MAX_UPSTREAM_TEXT - 1] + "…"
    return cleaned


def field_summary(messages: Any, limit: int = 300) -> str:
    """Name the fields of a marshmallow error that failed to load (never their values)."""
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
