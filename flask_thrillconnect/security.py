"""Browser-facing guards: the CSRF token and the ``Origin`` check.

Coexisting with Flask-WTF: ``CSRFProtect`` checks every ``POST``/``PUT``/``DELETE`` of the app
and reads ``X-CSRFToken`` too, so it would refuse our token with its own 400 before our view
runs. :func:`stand_aside_from_csrf_protect` exempts the blueprint from it (whichever
``init_app`` runs first) and the blueprint keeps its own check, bound to the player, for every
portal alike (see ``docs/security.rst``).
"""

from __future__ import annotations

import importlib
from typing import Any

from flask import Blueprint, Flask, current_app, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.exceptions import Forbidden

from .errors import ConfigurationError

CSRF_HEADER = "X-CSRFToken"
_CSRF_SALT = "flask-thrillconnect.csrf"


def _serializer() -> URLSafeTimedSerializer:
    secret = current_app.secret_key
    if not secret:
        raise ConfigurationError("SECRET_KEY is required to sign thrillconnect CSRF tokens")
    return URLSafeTimedSerializer(secret, salt=_CSRF_SALT)


def make_csrf_token(player_id: str | None) -> str:
    """A signed, time-limited token bound to the player (or to anonymity).

    Binding it to the player means a token lifted from one player's page is no
    use in another player's session.
    """
    return _serializer().dumps({"p": player_id or ""})


def check_csrf_token(token: str | None, player_id: str | None, max_age: int) -> None:
    """Refuse with 403 unless ``token`` was made by :func:`make_csrf_token` for this player."""
    if not token:
        raise Forbidden(f"the {CSRF_HEADER} header is missing")
    if len(token) > 512:
        raise Forbidden("the CSRF token is not valid")
    try:
        data = _serializer().loads(token, max_age=max_age)
    except SignatureExpired:
        raise Forbidden("the CSRF token has expired; reload the page") from None
    except BadSignature:
        raise Forbidden("the CSRF token is not valid") from None
    if not isinstance(data, dict) or data.get("p") != (player_id or ""):
        raise Forbidden("the CSRF token belongs to another session")


def refuse_flask_wtf_token(token: str | None) -> None:
    """Say so, with 403, when ``token`` is the portal's Flask-WTF token rather than ours.

    Called after our own check failed: an operator whose scripts send ``csrf_token()`` (Flask-WTF's)
    to our routes learns which token to send instead of reading "not valid".
    """
    if not token or len(token) > 512 or "csrf" not in current_app.extensions:
        return
    try:
        flask_wtf_csrf = importlib.import_module("flask_wtf.csrf")
    except ImportError:  # something else registered "csrf"
        return
    try:
        flask_wtf_csrf.validate_csrf(token)
    except flask_wtf_csrf.ValidationError:
        return
    raise Forbidden(
        "this is the portal's Flask-WTF token; the thrillconnect routes want "
        "thrillconnect.csrf_token() (the widgets' data-tc-csrf) in the X-CSRFToken header"
    )


def stand_aside_from_csrf_protect(app: Flask, blueprint: Blueprint) -> None:
    """Exempt ``blueprint`` from Flask-WTF's ``CSRFProtect`` on ``app``, whenever it is set up.

    ``CSRFProtect`` checks in an app-level ``before_request``; so does it if it is set up
    already, and a hook registered now catches a ``CSRFProtect`` set up later: app-level hooks
    run in the order they were registered, so this one runs before the later one's check.
    """
    exempted: list[Any] = []

    def exempt() -> None:
        csrf = app.extensions.get("csrf")
        if csrf is None or any(done is csrf for done in exempted):
            return
        exempt_view = getattr(csrf, "exempt", None)
        if callable(exempt_view):
            exempt_view(blueprint)
            exempted.append(csrf)

    exempt()
    app.before_request(exempt)


def request_origin() -> str | None:
    """The browser origin of the current request: ``Origin``, else ``Referer``'s origin."""
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return origin.rstrip("/").lower()
    if origin == "null":
        return "null"
    referrer = request.referrer
    if referrer:
        scheme, _, rest = referrer.partition("://")
        host = rest.split("/", 1)[0]
        return f"{scheme}://{host}".lower()
    return None


def own_origin() -> str:
    """The portal's own origin as this request reached it (honours ProxyFix)."""
    return f"{request.scheme}://{request.host}".lower()


def origin_allowed(origin: str, allowed: frozenset[str] | None) -> bool:
    """Whether ``origin`` may call state-changing routes and open the relay."""
    if allowed is None:
        return origin == own_origin()
    return origin in allowed


def check_origin(allowed: frozenset[str] | None) -> None:
    """Refuse with 403 a browser request from an origin that is not allowed.

    Requests that carry neither ``Origin`` nor ``Referer`` do not come from a
    browser page on another site, so they pass here (the CSRF token still
    applies to them).
    """
    origin = request_origin()
    if origin is not None and not origin_allowed(origin, allowed):
        raise Forbidden("requests from this origin are not allowed")
