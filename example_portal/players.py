"""Who is logged in: players kept on the server, the browser holding only a random handle.

The wallet token must never reach the browser, and Flask's session cookie is signed, not
encrypted: so the session stores a handle and the :class:`Player` (token included) stays on the
server: in this process, or in Redis in cluster mode so that every worker knows it. A real
portal keeps its own server-side sessions; these stores are the demo's.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Protocol

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


class Logins(Protocol):
    """Where logins live: this process (:class:`LoginStore`) or Redis (:class:`RedisLogins`)."""

    def add(self, login: Login) -> str: ...

    def get(self, handle: Any) -> Login | None: ...

    def remove(self, handle: Any) -> None: ...


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


class RedisLogins:
    """Logins in Redis, so that every worker of every node knows them (cluster mode) and no
    browser does: the session cookie holds only the handle.

    :param client: a redis-py client.
    :param prefix: the portal's key prefix (``THRILLCONNECT_REDIS_PREFIX``).
    :param max_age: seconds a login lasts without being used.
    """

    def __init__(self, client: Any, prefix: str, max_age: float = 24 * 3600) -> None:
        self._client = client
        self._prefix = f"{prefix}portal:login:"
        self._max_age_ms = int(max_age * 1000)

    def add(self, login: Login) -> str:
        handle = secrets.token_urlsafe(24)
        player = asdict(login.player) if login.player is not None else None
        record = json.dumps({"player": player, "is_admin": login.is_admin})
        self._client.set(self._prefix + handle, record, px=self._max_age_ms)
        return handle

    def get(self, handle: Any) -> Login | None:
        if not isinstance(handle, str) or len(handle) > 64:
            return None
        # Each use extends the login (GETEX), as a server-side session would.
        record = self._client.getex(self._prefix + handle, px=self._max_age_ms)
        if record is None:
            return None
        data = json.loads(record)
        player = data["player"]
        if player is not None:
            player["segments"] = tuple(player["segments"])
        return Login(Player(**player) if player is not None else None, bool(data["is_admin"]))

    def remove(self, handle: Any) -> None:
        if isinstance(handle, str) and len(handle) <= 64:
            self._client.delete(self._prefix + handle)


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
