"""The portal's own per-app state, in ``app.extensions["example_portal"]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app, session

from flask_thrillconnect import ThrillConnect

from .players import Login, Logins, LoginStore

_LOGIN_KEY = "login"


@dataclass
class PortalState:
    """The extension, the login store and, in simulator mode, the simulator's handle."""

    tc: ThrillConnect
    simulator: Any | None = None
    logins: Logins = field(default_factory=LoginStore)


def portal_state() -> PortalState:
    """The current app's :class:`PortalState`."""
    return current_app.extensions["example_portal"]


def current_login() -> Login | None:
    """Who the current request's session belongs to, if anyone."""
    return portal_state().logins.get(session.get(_LOGIN_KEY))


def start_session(login: Login) -> None:
    """Log in: a fresh session (no fixation) holding only the login's handle."""
    end_session()
    session[_LOGIN_KEY] = portal_state().logins.add(login)


def end_session() -> None:
    """Log out: forget the login and clear the session."""
    portal_state().logins.remove(session.get(_LOGIN_KEY))
    session.clear()
