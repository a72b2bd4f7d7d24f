"""CSRF protection for the portal's own forms (login, logout, simulator controls).

A random token kept in the session and echoed by every form (or the ``X-Portal-CSRF`` header
of the portal's script). The blueprint's routes have their own token
(``thrillconnect.csrf_token()``); this one guards the portal's routes only.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import Flask, request, session
from werkzeug.exceptions import Forbidden

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-Portal-CSRF"
_SESSION_KEY = "portal_csrf"

_P = ParamSpec("_P")
_R = TypeVar("_R")


def portal_csrf_token() -> str:
    """The session's form token, made on first use."""
    token = session.get(_SESSION_KEY)
    if not isinstance(token, str):
        token = session[_SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def check_portal_csrf() -> None:
    """Refuse with 403 unless the request echoes the session's token."""
    expected = session.get(_SESSION_KEY)
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not isinstance(expected, str) or not secrets.compare_digest(sent, expected):
        raise Forbidden("The form has expired. Reload the page and try again.")


def csrf_protected(view: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a state-changing view so that it checks the token first."""

    @functools.wraps(view)
    def checked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        check_portal_csrf()
        return view(*args, **kwargs)

    return checked


def init_forms(app: Flask) -> None:
    """Give templates ``portal_csrf_token()``."""
    app.jinja_env.globals["portal_csrf_token"] = portal_csrf_token
