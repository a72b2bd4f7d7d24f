"""A warning for portals that keep the wallet token in Flask's default session.

Flask's default session is a cookie that is signed, not encrypted: the browser holds it and
anyone who reads it can decode it. A ``player_loader`` that takes ``Player.token`` from there
hands the wallet token to the browser, the one thing this extension promises never happens.
The token cannot be taken back out of the cookie from here, but the mistake is cheap to spot
(the token equals a value of that session), so it is logged once per app, naming the session
key and never the token.
"""

from __future__ import annotations

import logging
import threading
import weakref

from flask import current_app, has_request_context
from flask.globals import request_ctx
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from .player import Player

logger = logging.getLogger("flask_thrillconnect")

# Apps already warned about (and no longer checked); weak, so apps are not kept alive.
_warned: weakref.WeakSet[object] = weakref.WeakSet()
_warned_lock = threading.Lock()


def warn_if_token_in_cookie_session(owner: object, player: Player | None) -> None:
    """Log one warning per app when ``player.token`` is a value of the cookie session.

    Only Flask's own cookie session (:class:`~flask.sessions.SecureCookieSessionInterface`) is
    looked at; a server-side session is where the token may live. The session is read only if
    the request already read it (the ``player_loader`` usually has), and without touching it:
    reading it through :data:`flask.session` would add ``Vary: Cookie`` to the response.

    :param owner: what "once" is counted per: the app's extension state (weakly referenced).
    :param player: what the ``player_loader`` returned.
    """
    if player is None or owner in _warned or not has_request_context():
        return
    if not isinstance(current_app.session_interface, SecureCookieSessionInterface):
        return
    session = _session_read_so_far()
    if session is None:
        return
    token = player.token
    key = next((k for k, v in session.items() if isinstance(v, str) and v == token), None)
    if key is None:
        return
    with _warned_lock:
        if owner in _warned:
            return
        _warned.add(owner)
    logger.warning(
        "The player's wallet token is stored in the session under %r, and Flask's default "
        "session is a signed cookie the browser can read: keep the token server side (the "
        "user record or a server-side session) and put only the user's id in the session. "
        "Logged once per app.",
        key,
    )


def _session_read_so_far() -> SecureCookieSession | None:
    """The request's session if the request has read it already, else ``None``.

    The request context's own attribute does not set ``accessed``, unlike ``flask.session``.
    """
    session = getattr(request_ctx, "_session", None)
    return session if isinstance(session, SecureCookieSession) and session.accessed else None
