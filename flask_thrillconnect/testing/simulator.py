"""The public handle of the simulator: :class:`Simulator` serves a local ThrillConnect on a real
socket, in background threads, and drives it through its HTTP control routes.

Tests, the pytest fixture (:mod:`.plugin`), the CLI (:mod:`.__main__`), the benchmarks and the
example portal all start the simulator through this class.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from ..player import Player
from .app import create_app
from .connections import CLOSE_GOING_AWAY, CLOSE_GRACE_SECONDS
from .domain import BRAND_IDS, OPERATOR_ID
from .runtime import Platform
from .tokens import DEFAULT_SECRET, issue_service_token

logger = logging.getLogger(__name__)

SERVICE_TOKEN_LIFETIME = 24 * 3600.0
_QUERY = re.compile(r"\?[^\s\"']*")


class SimulatorControlError(RuntimeError):
    """A control route refused a request; ``status`` and ``error`` are the HTTP answer's."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error


class _QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler with its access log sent to our logger at DEBUG (a library configures
    no logging) and query strings cut out of it: they carry service and wallet tokens."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s %s", self.command, urlsplit(self.path).path, code)

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("%s", _QUERY.sub("?…", message % args))


class Simulator:
    """A running local ThrillConnect on a real socket.

    :param host: interface to listen on.
    :param port: port, 0 for a free one.
    :param tick_interval: seconds between automatic ticks; 0 ticks only when told to.
    :param seed: seed of the world (ids, values, wins).
    :param win_chance: probability per active jackpot per tick of a random win.

    ``service_token`` is a service JWT of operator ``thrilltech`` for ``brand1`` and ``brand2``,
    valid 24 hours (so that demos outlive the platform's 30-minute tokens).
    """

    operator_id = OPERATOR_ID

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tick_interval: float = 0.0,
        seed: int = 1,
        win_chance: float = 0.0,
    ) -> None:
        if tick_interval < 0:
            raise ValueError("tick_interval must be >= 0")
        self.host = host
        self.port = port
        self.tick_interval = tick_interval
        self._secret = DEFAULT_SECRET
        self._platform = Platform(seed, win_chance, self._secret)
        self.app = create_app(self._platform)
        self.service_token = self.make_service_token(expires_in=SERVICE_TOKEN_LIFETIME)
        self._server: BaseWSGIServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._session = requests.Session()

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> Simulator:
        """Listen and serve in background threads; answer ``self``."""
        if self._server is not None:
            raise RuntimeError("the simulator is already started")
        self._server = make_server(
            self.host, self.port, self.app, threaded=True, request_handler=_QuietRequestHandler
        )
        self.port = self._server.server_port
        server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="thrillconnect-simulator",
            daemon=True,
        )
        self._threads.append(server_thread)
        if self.tick_interval > 0:
            self._threads.append(
                threading.Thread(target=self._tick_forever, name="sim-ticker", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        logger.info("ThrillConnect simulator serving on %s", self.url)
        return self

    def _tick_forever(self) -> None:
        while not self._stopping.wait(self.tick_interval):
            try:
                self._platform.tick()
            except Exception:
                logger.exception("automatic tick failed")

    def stop(self) -> None:
        """Stop ticking, release held requests, close every WebSocket, stop serving; returns
        within a few seconds."""
        if self._server is None or self._stopping.is_set():
            return
        self._stopping.set()
        self._platform.faults.stop()
        self._server.shutdown()
        self._platform.broadcaster.close_all(CLOSE_GOING_AWAY, "simulator stopping", shut=True)
        self._server.server_close()
        for thread in self._threads:
            thread.join(CLOSE_GRACE_SECONDS)
        self._session.close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses and credentials ------------------------------------------------------------
    @property
    def url(self) -> str:
        """REST base URL (routes are under ``/v1``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """WebSocket base URL."""
        return f"ws://{self.host}:{self.port}"

    def make_service_token(
        self,
        *,
        org_id: str = OPERATOR_ID,
        unit_ids: Iterable[str] = BRAND_IDS,
        expires_in: float = 1800,
        secret: str | None = None,
    ) -> str:
        """A service JWT; another ``org_id``, a negative ``expires_in`` or another ``secret``
        make tokens the simulator refuses (403, 401, 401)."""
        return issue_service_token(
            self._secret if secret is None else secret,
            org_id=org_id,
            unit_ids=tuple(unit_ids),
            expires_in=expires_in,
        )

    @property
    def instance_ids(self) -> dict[str, str]:
        """Role → instance id (``progressive``, ``raffle``, ``brand2``, ...)."""
        return self._platform.world.instance_ids

    @property
    def players(self) -> dict[str, dict[str, Any]]:
        """Player id → ``{"id", "token", "currency", "country", "segments", "operator_id",
        "brand_id"}`` for every wallet player."""
        return self._platform.world.wallet.entries()

    def player(self, player_id: str, *, locale: str | None = None) -> Player:
        """The :class:`~flask_thrillconnect.Player` of a wallet player, token included:
        what a portal's ``player_loader`` returns once that player has logged in.

        :raises KeyError: no such wallet player.
        """
        wallet = self.players[player_id]
        return Player(
            id=wallet["id"],
            token=wallet["token"],
            currency=wallet["currency"],
            country_code=wallet["country"],
            segments=tuple(wallet["segments"]),
            locale=locale,
        )

    # -- control, through the HTTP control routes ---------------------------------------------
    def _control(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        response = self._session.request(method, self.url + path, json=body, timeout=(3.05, 30))
        answer: dict[str, Any] = response.json()
        if response.status_code >= 400:
            raise SimulatorControlError(
                response.status_code, answer.get("error", ""), answer.get("message", "")
            )
        return answer

    def tick(self, count: int = 1) -> None:
        """``count`` ticks now (pots grow, ``JackpotUpdate`` per active instance per tick)."""
        self._control("POST", "/_sim/tick", {"count": count})

    def win(
        self, instance_id: str, pot_id: str | None = None, player_id: str | None = None
    ) -> dict[str, Any]:
        """A win now (a raffle draws); answer the ``WinEvent``/``RaffleWinEvent`` data."""
        body = {"instance_id": instance_id, "pot_id": pot_id, "player_id": player_id}
        return self._control("POST", "/_sim/win", {k: v for k, v in body.items() if v is not None})

    def stats(self) -> dict[str, Any]:
        """REST requests served, WebSockets open and accepted."""
        return self._control("GET", "/_sim/stats")

    def faults(self, rest: dict[str, Any] | None = None, ws: str | None = None) -> None:
        """Set both faults; ``faults()`` clears everything."""
        self._control("POST", "/_sim/faults", {"rest": rest, "ws": ws})

    def add_player(
        self,
        id: str,
        token: str,
        currency: str,
        country: str,
        segments: tuple[str, ...] = (),
        brand_id: str = "brand1",
    ) -> None:
        """Register a wallet player."""
        self._control(
            "POST",
            "/_sim/players",
            {
                "id": id,
                "token": token,
                "currency": currency,
                "country": country,
                "segments": list(segments),
                "brand_id": brand_id,
            },
        )
