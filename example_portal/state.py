"""The portal's own per-app state, in ``app.extensions["example_portal"]``, and logging in/out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, session
from flask_login import current_user, login_user, logout_user

from flask_thrillconnect import ThrillConnect

from .players import Login, Logins, PortalUser


@dataclass
class PortalState:
    """The extension, the login store and, in simulator mode, the simulator's handle."""

    tc: ThrillConnect
    logins: Logins
    simulator: Any | None = None


def portal_state() -> PortalState:
    """The current app's :class:`PortalState`."""
    return current_app.extensions["example_portal"]


def load_user(login_id: str) -> PortalUser | None:
    """Flask-Login's ``user_loader``: the login record kept on the server, by its id."""
    login = portal_state().logins.get(login_id)
    return PortalUser(login_id, login) if login is not None else None


def log_in(login: Login) -> None:
    """A fresh session (no fixation) whose Flask-Login user is ``login``, kept server side."""
    log_out()
    login_user(PortalUser(portal_state().logins.add(login), login))


def log_out() -> None:
    """Forget the current login on the server and clear the session."""
    if current_user.is_authenticated:
        portal_state().logins.remove(current_user.get_id())
    logout_user()
    session.clear()
