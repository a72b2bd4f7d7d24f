"""The example portal: a small casino lobby showing everything flask_thrillconnect does, built on
the extensions a portal already uses: Flask-Login (logins), Flask-WTF (forms and
``CSRFProtect``) and Flask-Talisman (a strict Content-Security-Policy).

``create_app(config)`` builds it. With ``PORTAL_SIMULATOR`` (a started
:class:`flask_thrillconnect.testing.Simulator`) in the config, it runs in *simulator mode*: the
login page lists the simulator's demo players and the lobby offers "force a win" and "tick
now". Without it, players log in with their wallet details against the real platform.
``python -m example_portal`` runs it (see :mod:`example_portal.__main__`); under gunicorn, serve
:mod:`example_portal.wsgi`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_login import LoginManager, current_user

from flask_thrillconnect import Player, ThrillConnect
from flask_thrillconnect.redis_connection import connect

from . import accounts, lobby, simulator_controls
from .csp import init_csp
from .forms import init_forms
from .players import Logins, RedisLogins, SqliteLogins, Visitor
from .state import PortalState, load_user

#: The portal's own settings and their defaults.
DEFAULTS: dict[str, Any] = {
    "PORTAL_NAME": "Thrill Casino",
    "PORTAL_SIMULATOR": None,
    # Behind TLS: redirect to HTTPS, send HSTS, mark the session cookie Secure (see csp.py).
    "PORTAL_HTTPS": False,
    # Where logins live without Redis; None: "logins.sqlite3" in the instance folder.
    "PORTAL_LOGINS_DB": None,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the portal.

    :param config: Flask settings: ``SECRET_KEY`` and the ``THRILLCONNECT_*`` keys (see the
        extension's configuration), ``PORTAL_NAME``, ``PORTAL_SIMULATOR``, ``PORTAL_HTTPS``,
        ``PORTAL_LOGINS_DB``.
    :raises flask_thrillconnect.errors.ConfigurationError: a required key is missing.
    """
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.update(config or {})

    tc = ThrillConnect(app)
    tc.player_loader(_load_player)
    tc.admin_check(_is_admin)
    app.extensions["example_portal"] = PortalState(
        tc, _login_store(app), app.config["PORTAL_SIMULATOR"]
    )

    login_manager = LoginManager(app)
    login_manager.user_loader(load_user)
    login_manager.anonymous_user = Visitor
    login_manager.login_view = "accounts.login_page"
    # Talisman first: its nonce must exist before CSRFProtect may refuse a request.
    init_csp(app)
    # The extension exempts its own routes from CSRFProtect, whatever the order.
    init_forms(app)

    app.register_blueprint(accounts.bp)
    app.register_blueprint(lobby.bp)
    if app.config["PORTAL_SIMULATOR"] is not None:
        app.register_blueprint(simulator_controls.bp)
    return app


def _login_store(app: Flask) -> Logins:
    """Every worker must know the logins: Redis in cluster mode, else a SQLite file that every
    worker process of this host shares. Never the session cookie: it holds wallet tokens."""
    settings = app.extensions["thrillconnect"].settings
    if settings.redis_url is not None:
        return RedisLogins(connect(settings.redis_url), settings.redis_prefix)
    path = app.config["PORTAL_LOGINS_DB"] or os.path.join(app.instance_path, "logins.sqlite3")
    return SqliteLogins(path)


def _load_player() -> Player | None:
    """The extension's ``player_loader``: Flask-Login's ``current_user``, kept server side."""
    return current_user.player if current_user.is_authenticated else None


def _is_admin() -> bool:
    return bool(current_user.is_authenticated and current_user.is_admin)
