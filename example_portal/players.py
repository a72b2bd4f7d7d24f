"""Who is logged in: players kept on the server, the browser holding only a random handle.

The wallet token must never reach the browser, and Flask's session cookie is signed, not
encrypted: so the session stores a handle and the :class:`Player` (token included) stays in
this process. A real portal keeps its own server-side sessions; this store is the demo's.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from flask_thrillconnect import Player

#: How people in each demo country read money (the widgets format with it).
LOCALE_BY_COUNTRY = {
    "AU": "en_AU",
    "CA": "en_CA",
    "DE": "de_DE",
    "GB": "en_GB",
    "MT": "en_MT",
    "NZ": "en_NZ",
    "PL": "pl_PL",
    "RO": "ro_RO",
    "SE": "sv_SE",
    "SG": "en_SG",
    "US": "en_US",
}


@dataclass(frozen=True)
class DemoPlayer:
    """A simulator wallet player as the login page lists them (no token)."""

    id: str
    currency: str
    country: str
    segments: tuple[str, ...]


@dataclass(frozen=True)
class Login:
    """A logged-in session: the player, or ``None`` for an administrator who is not playing."""

    player: Player | None
    is_admin: bool


class LoginStore:
    """Logins by handle, bounded (the oldest are forgotten first) and thread-safe.

    :param max_entries: how many logins are kept at most.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max_entries = max_entries
        self._logins: OrderedDict[str, Login] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, login: Login) -> str:
        """Keep ``login``; answer the handle to put in the session."""
        handle = secrets.token_urlsafe(24)
        with self._lock:
            self._logins[handle] = login
            while len(self._logins) > self._max_entries:
                self._logins.popitem(last=False)
        return handle

    def get(self, handle: Any) -> Login | None:
        """The login of ``handle``, if it is still known."""
        if not isinstance(handle, str):
            return None
        with self._lock:
            login = self._logins.get(handle)
            if login is not None:
                self._logins.move_to_end(handle)
            return login

    def remove(self, handle: Any) -> None:
        """Forget ``handle`` (log out)."""
        if isinstance(handle, str):
            with self._lock:
                self._logins.pop(handle, None)


def demo_players(simulator: Any, brand_id: str) -> list[DemoPlayer]:
    """The simulator's wallet players of the portal's brand, by id."""
    return [
        DemoPlayer(p["id"], p["currency"], p["country"], tuple(p["segments"]))
        for p in sorted(simulator.players.values(), key=lambda p: p["id"])
        if p["brand_id"] == brand_id
    ]


def demo_player(simulator: Any, player_id: str, brand_id: str) -> Player | None:
    """The :class:`Player` of a simulator wallet player of the brand, token included."""
    wallet = simulator.players.get(player_id)
    if wallet is None or wallet["brand_id"] != brand_id:
        return None
    return simulator.player(player_id, locale=LOCALE_BY_COUNTRY.get(wallet["country"]))
