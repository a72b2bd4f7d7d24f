"""The example portal: a small casino lobby showing everything flask_thrillconnect does.

``create_app(config)`` builds it. With ``PORTAL_SIMULATOR`` (a started
:class:`flask_thrillconnect.testing.Simulator`) in the config, it runs in *simulator mode*: the
login page lists the simulator's demo players and the lobby offers "force a win" and "tick
now". Without it, players log in with their wallet details against the real platform.
``python -m example_portal`` runs it (see :mod:`example_portal.__main__`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from flask_thrillconnect import Player, ThrillConnect
from flask_thrillconnect.redis_connection import connect

from . import accounts, lobby, simulator_controls
from .csp import init_csp
from .forms import init_forms
from .players import Logins, LoginStore, RedisLogins
from .state import PortalState, current_login

#: The portal's own settings and their defaults.
DEFAULTS: dict[str, Any] = {
    "PORTAL_NAME": "Thrill Casino",
    "PORTAL_SIMULATOR": None,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the portal.

    :param config: Flask settings: ``SECRET_KEY`` and the ``THRILLCONNECT_*`` keys (see the
        extension's configuration), ``PORTAL_NAME``, ``PORTAL_SIMULATOR``.
    :raises flask_thrillconnect.errors.ConfigurationError: a required key is missing.
    """
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.update(config or {})

    tc = ThrillConnect(app)
    tc.player_loader(_load_player)
    tc.admin_check(_is_admin)
    app.extensions["example_portal"] = PortalState(
        tc, app.config["PORTAL_SIMULATOR"], _login_store(app)
    )

    init_csp(app)
    init_forms(app)
    app.jinja_env.globals["current_login"] = current_login
    app.register_blueprint(accounts.bp)
    app.register_blueprint(lobby.bp)
    if app.config["PORTAL_SIMULATOR"] is not None:
        app.register_blueprint(simulator_controls.bp)
    return app


def _login_store(app: Flask) -> Logins:
    """In cluster mode every worker must know the logins: they go to the same Redis."""
    settings = app.extensions["thrillconnect"].settings
    if settings.redis_url is None:
        return LoginStore()
    return RedisLogins(connect(settings.redis_url), settings.redis_prefix)


def _load_player() -> Player | None:
    login = current_login()
    return login.player if login is not None else None


def _is_admin() -> bool:
    login = current_login()
    return login is not None and login.is_admin
