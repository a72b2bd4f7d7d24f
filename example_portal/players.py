"""Who is logged in: Flask-Login users whose records stay on the server.

The wallet token must never reach the browser, and Flask's session cookie is signed, not
encrypted: so Flask-Login's session holds only a random login id, and the :class:`Login` record
(the :class:`Player`, wallet token included) stays on the server, where every worker reads it:
in Redis in cluster mode (``THRILLCONNECT_REDIS_URL``), otherwise in a small SQLite file in the
instance folder, which every worker process of the host shares. A real portal loads its users
from its own database the same way (``login_manager.user_loader``).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from flask_login import AnonymousUserMixin, UserMixin

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
#: Seconds a login lasts.
LOGIN_MAX_AGE = 24 * 3600
#: Login ids are ``secrets.token_urlsafe(24)``; anything much longer is not one.
_MAX_HANDLE = 64


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


class PortalUser(UserMixin):
    """Flask-Login's ``current_user`` for a logged-in session.

    :param login_id: the random id Flask-Login keeps in the session (``get_id()``).
    """

    def __init__(self, login_id: str, login: Login) -> None:
        self.id = login_id
        self.player = login.player
        self.is_admin = login.is_admin


class Visitor(AnonymousUserMixin):
    """Flask-Login's ``current_user`` for anonymous visitors: no player, no administrator."""

    player: Player | None = None
    is_admin = False


class Logins(Protocol):
    """Where logins live: Redis (:class:`RedisLogins`) or SQLite (:class:`SqliteLogins`)."""

    def add(self, login: Login) -> str: ...

    def get(self, handle: Any) -> Login | None: ...

    def remove(self, handle: Any) -> None: ...


def _dump(login: Login) -> str:
    player = asdict(login.player) if login.player is not None else None
    return json.dumps({"player": player, "is_admin": login.is_admin})


def _load(record: str | bytes) -> Login:
    data = json.loads(record)
    player = data["player"]
    if player is not None:
        player["segments"] = tuple(player["segments"])
    return Login(Player(**player) if player is not None else None, bool(data["is_admin"]))


def _is_handle(handle: Any) -> bool:
    return isinstance(handle, str) and 0 < len(handle) <= _MAX_HANDLE


class SqliteLogins:
    """Logins in a SQLite file that every worker process of the host shares.

    The file holds wallet tokens: it is created readable by its owner only.

    :param path: the database file (its folder is created when missing).
    :param max_age: seconds a login lasts.
    """

    def __init__(self, path: str, max_age: float = LOGIN_MAX_AGE) -> None:
        self.path = path
        self._max_age = max_age
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        with closing(self._connect()) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS logins"
                " (handle TEXT PRIMARY KEY, record TEXT NOT NULL, expires REAL NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        # A connection per call: cheap, and safe across threads and processes.
        return sqlite3.connect(self.path, timeout=5)

    def add(self, login: Login) -> str:
        handle = secrets.token_urlsafe(24)
        now = time.time()
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM logins WHERE expires < ?", (now,))
            db.execute(
                "INSERT INTO logins (handle, record, expires) VALUES (?, ?, ?)",
                (handle, _dump(login), now + self._max_age),
            )
        return handle

    def get(self, handle: Any) -> Login | None:
        if not _is_handle(handle):
            return None
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT record FROM logins WHERE handle = ? AND expires >= ?", (handle, time.time())
            ).fetchone()
        return _load(row[0]) if row is not None else None

    def remove(self, handle: Any) -> None:
        if _is_handle(handle):
            with closing(self._connect()) as db, db:
                db.execute("DELETE FROM logins WHERE handle = ?", (handle,))


class RedisLogins:
    """Logins in Redis, so that every worker of every node knows them (cluster mode) and no
    browser does: the session cookie holds only the login id.

    :param client: a redis-py client.
    :param prefix: the portal's key prefix (``THRILLCONNECT_REDIS_PREFIX``).
    :param max_age: seconds a login lasts without being used.
    """

    def __init__(self, client: Any, prefix: str, max_age: float = LOGIN_MAX_AGE) -> None:
        self._client = client
        self._prefix = f"{prefix}portal:login:"
        self._max_age_ms = int(max_age * 1000)

    def add(self, login: Login) -> str:
        handle = secrets.token_urlsafe(24)
        self._client.set(self._prefix + handle, _dump(login), px=self._max_age_ms)
        return handle

    def get(self, handle: Any) -> Login | None:
        if not _is_handle(handle):
            return None
        # Each use extends the login (GETEX), as a server-side session would.
        record = self._client.getex(self._prefix + handle, px=self._max_age_ms)
        return _load(record) if record is not None else None

    def remove(self, handle: Any) -> None:
        if _is_handle(handle):
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
