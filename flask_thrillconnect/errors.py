"""The exception family of flask_thrillconnect.

Every exception the package raises on purpose derives from :class:`ThrillConnectError`, and
none derives from werkzeug's HTTP exceptions: the server-side helpers
(:meth:`~flask_thrillconnect.ThrillConnect.ticker` and friends) raise these, and a portal
handles them as it likes (``app.errorhandler(ThrillConnectError)``). Each class's ``code`` is
the HTTP status the blueprint answers with when one reaches a browser; the blueprint's
responses module turns any of them into ``{"error", "message"}`` with that status.

Messages are written by this package: they never contain a token, an ``Authorization`` header
or a URL with its query string, and they never echo long or control-character values that a
browser sent. An upstream error's ``message`` names the upstream call (``GET /v1/…``) for the
operator's logs; what a player may see is :attr:`ThrillConnectError.public_message`, which names
no upstream URL or path.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConfigurationWarning",
    "InvalidIdentifier",
    "InvalidRequest",
    "RateLimited",
    "ThrillConnectError",
    "UnknownCurrency",
    "UpstreamBadRequest",
    "UpstreamError",
    "UpstreamForbidden",
    "UpstreamNotFound",
    "UpstreamTimeout",
    "UpstreamUnauthorized",
    "UpstreamUnavailable",
    "is_upstream_failure",
    "upstream_error_for_status",
]


class ThrillConnectError(Exception):
    """Base class of every error raised by flask_thrillconnect."""

    #: HTTP status the blueprint answers with when this error reaches a browser.
    code: int = 500
    #: Set once the error was logged where it happened (one line per failure).
    logged: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    @property
    def public_message(self) -> str:
        """What a player's browser or page may be told: ``message``, except for upstream
        errors, whose message names the upstream call and is for the operator's logs only."""
        return self.message


class ConfigurationWarning(UserWarning):
    """A configuration that works but is probably not what was meant (an unknown
    ``THRILLCONNECT_*`` key). Not an error: :func:`warnings.warn` category."""


class ConfigurationError(ThrillConnectError):
    """The extension or the client is configured wrongly (missing key, bad URL, no token)."""


class InvalidRequest(ThrillConnectError):
    """A value sent by a caller or a browser was refused before it reached ThrillConnect.

    :param message: what is wrong, without echoing the refused value.
    :param field: the name of the offending field, when there is one.
    """

    code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidIdentifier(InvalidRequest):
    """An identifier (source, instance, player, brand…) was refused.

    :param field: the name of the field holding the identifier.
    :param problem: what is wrong with it (never the value itself).
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid {field}: {problem}", field=field)
        self.what = field
        self.problem = problem


class UnknownCurrency(ThrillConnectError, LookupError):
    """A currency code is not among the exchange rates ThrillConnect published."""

    code = 400


class RateLimited(ThrillConnectError):
    """A browser asked for too many answers that are not cached; it may try again later.

    :param retry_after: whole seconds after which a request is likely to be served.
    """

    code = 429
    error = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(ThrillConnectError):
    """ThrillConnect could not give a usable answer.

    :param message: the upstream ``message`` when it sent one, else ours.
    :param status: the upstream HTTP status, ``None`` when there was no answer.
    :param error: the upstream ``error`` code (e.g. ``not_found``), when it sent one.
    """

    code = 502
    #: What a player may be told (no upstream URL, path or upstream text).
    public_text = "ThrillConnect could not give a usable answer"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        public: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.error = error
        self._public = public

    @property
    def public_message(self) -> str:
        """The class's ``public_text``, or the ``public`` text given (an upstream refusal
        written for players, such as an opt-in's "not eligible")."""
        return self._public if self._public is not None else self.public_text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, error={self.error!r}, "
            f"message={self.message!r})"
        )


class UpstreamBadRequest(UpstreamError):
    """ThrillConnect answered 400: the request we sent was refused."""

    code = 400
    public_text = "ThrillConnect refused the request"


class UpstreamUnauthorized(UpstreamError):
    """ThrillConnect answered 401: the portal's credentials are missing or wrong.

    A proxy answers 502: the portal's configuration is at fault, not the browser.
    """

    code = 502
    public_text = "the portal could not sign in to ThrillConnect"


class UpstreamForbidden(UpstreamError):
    """ThrillConnect answered 403: the portal's credentials do not allow this.

    A proxy answers 502: the portal's configuration is at fault, not the browser.
    """

    code = 502
    public_text = "the portal may not ask ThrillConnect for this"


class UpstreamNotFound(UpstreamError):
    """ThrillConnect answered 404: no such source, instance or route."""

    code = 404
    public_text = "no such jackpot"


class UpstreamUnavailable(UpstreamError):
    """ThrillConnect is unreachable or answered something unusable.

    Raised for 5xx answers, connection errors, redirects we refuse to follow and 2xx answers
    whose body does not load. ``code`` is 503 when the upstream said 503, else 502.
    """

    public_text = "ThrillConnect is unavailable; try again shortly"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        public: str | None = None,
    ):
        super().__init__(message, status=status, error=error, public=public)
        self.code = 503 if status == 503 else 502


class UpstreamTimeout(UpstreamError):
    """ThrillConnect did not connect or answer within the configured timeout."""

    code = 504
    public_text = "ThrillConnect did not answer in time; try again shortly"


_ERROR_FOR_STATUS: dict[int, type[UpstreamError]] = {
    400: UpstreamBadRequest,
    401: UpstreamUnauthorized,
    403: UpstreamForbidden,
    404: UpstreamNotFound,
}


def upstream_error_for_status(
    status: int, message: str, *, error: str | None = None
) -> UpstreamError:
    """Build the exception that stands for a non-2xx upstream answer.

    :param status: the upstream HTTP status.
    :param message: the message to carry (already free of tokens).
    :param error: the upstream ``error`` code, if any.
    """
    cls = _ERROR_FOR_STATUS.get(status)
    if cls is None:
        # 5xx (and odd statuses such as an unfollowed 3xx) mean "no usable answer"; other
        # 4xx (405, 409, 429…) keep the generic class.
        cls = UpstreamError if 400 <= status < 500 else UpstreamUnavailable
    return cls(message, status=status, error=error)


def is_upstream_failure(exc: BaseException) -> bool:
    """Failures that stale data may stand in for: the platform is down or slow."""
    return isinstance(exc, (UpstreamUnavailable, UpstreamTimeout))
