"""The ``ThrillConnect`` extension object and the per-app state it keeps."""

from __future__ import annotations

import atexit
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, has_request_context

from . import schemas
from .cache import MemoryStorage, ResponseCache
from .client import ThrillConnectClient
from .config import Settings, read_settings
from .errors import ThrillConnectError, UpstreamTimeout, UpstreamUnavailable
from .health import RestProbe
from .player import Player
from .relay.service import Relay
from .service import JackpotService
from .session_check import warn_if_token_in_cookie_session

logger = logging.getLogger("flask_thrillconnect")

PlayerLoader = Callable[[], Player | None]
AdminCheck = Callable[[], bool]

# Every app's state in this process, so that one call can close them all at exit.
_live_states: weakref.WeakSet[State] = weakref.WeakSet()


def shutdown() -> None:
    """Close every app's relay and cache in this process: browsers get 1001.

    Runs at interpreter exit. Under gunicorn, call it from the ``worker_exit`` hook
    as well, so relay connections end before the worker waits for its threads::

        # gunicorn.conf.py
        def worker_exit(server, worker):
            from flask_thrillconnect import shutdown
            shutdown()
    """
    for state in list(_live_states):
        state.close()


atexit.register(shutdown)


def is_upstream_failure(exc: BaseException) -> bool:
    """Failures that stale data may stand in for: the platform is down or slow."""
    return isinstance(exc, (UpstreamUnavailable, UpstreamTimeout))


class State:
    """Everything one app needs: settings, client, cache. Lives in ``app.extensions``."""

    def __init__(self, extension: ThrillConnect, settings: Settings):
        self.extension = extension
        self.settings = settings
        self.client = ThrillConnectClient(
            settings.url,
            operator_id=settings.operator_id,
            brand_id=settings.brand_id,
            service_token=settings.service_token,
            timeout=settings.timeout,
            ws_url=settings.ws_url,
        )
        self.cache = ResponseCache(
            MemoryStorage(max_entries=settings.cache_max_entries),
            stale_ttl=settings.stale_ttl,
            # Waiters give the leader's fetch as long as it may take, retries included.
            wait_timeout=(self.client.retries + 1) * sum(settings.timeout),
            is_upstream_failure=is_upstream_failure,
        )
        self.service = JackpotService(settings, self.client, self.cache)
        self.relay = Relay(settings, self.client, self.service)
        self.rest_probe = RestProbe(self._probe_rest)
        _live_states.add(self)

    def load_player(self) -> Player | None:
        """The current request's player from ``player_loader``, once per request."""
        if not has_request_context() or self.extension._player_loader is None:
            return None
        from flask import g

        if "_thrillconnect_player" not in g:
            player = self.extension._player_loader()
            if player is not None and not isinstance(player, Player):
                raise TypeError("player_loader must return a flask_thrillconnect.Player or None")
            warn_if_token_in_cookie_session(current_app._get_current_object(), player)
            g._thrillconnect_player = player
        return g._thrillconnect_player

    def is_admin(self) -> bool:
        check = self.extension._admin_check
        return bool(check()) if check is not None else False

    def health(self) -> dict[str, Any]:
        """Upstream REST status (probed in the background) and cache figures, within ~1 s."""
        rest = self.rest_probe.status()
        relay = self.relay.stats()
        stream_ok = relay["upstream"].get("state") in (None, "idle", "connected")
        return {
            "status": "ok" if rest["ok"] and stream_ok else "degraded",
            "upstream": {"rest": rest, "stream": relay.pop("upstream")},
            "relay": relay,
            "cache": self.cache.stats(),
        }

    def _probe_rest(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            version = self.client.health().version
        except ThrillConnectError as exc:
            return {"ok": False, "error": type(exc).__name__, "message": str(exc)}
        return {
            "ok": True,
            "version": version,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        }

    def close(self) -> None:
        """Close browsers (1001) and upstream streams, stop background refreshes."""
        self.relay.close()
        self.cache.close()


class ThrillConnect:
    """The Flask extension: ``ThrillConnect(app)`` or ``ThrillConnect()`` + ``init_app(app)``.

    Per-app state lives in ``app.extensions["thrillconnect"]``; the extension
    object keeps only the callbacks, so one object serves any number of apps.
    """

    def __init__(self, app: Flask | None = None):
        self._player_loader: PlayerLoader | None = None
        self._admin_check: AdminCheck | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read and check the configuration, mount the blueprint, add the CLI and Jinja global.

        :raises ConfigurationError: a required key is missing or a value is wrong.
        :raises RuntimeError: ``init_app`` was already called for this app.
        """
        if "thrillconnect" in app.extensions:
            raise RuntimeError(
                "ThrillConnect is already set up on this app; call init_app once per app "
                "(use one ThrillConnect object, or app factories, for several apps)"
            )
        from .cli import thrillconnect_cli
        from .jinja import TemplateGlobal
        from .views import bp

        settings = read_settings(app)
        app.extensions["thrillconnect"] = State(self, settings)
        app.register_blueprint(bp, url_prefix=settings.url_prefix)
        app.cli.add_command(thrillconnect_cli)
        app.jinja_env.globals["thrillconnect"] = TemplateGlobal()

    # -- callbacks ----------------------------------------------------------------------------

    def player_loader(self, callback: PlayerLoader) -> PlayerLoader:
        """Register the function that says who the current player is (``None``: anonymous)."""
        self._player_loader = callback
        return callback

    def admin_check(self, callback: AdminCheck) -> AdminCheck:
        """Register the function that says whether the current user may manage CORS rules."""
        self._admin_check = callback
        return callback

    # -- server-side helpers, sharing the blueprint's cache ---------------------------------

    @staticmethod
    def _state() -> State:
        try:
            return current_app.extensions["thrillconnect"]
        except KeyError:
            raise RuntimeError("ThrillConnect.init_app(app) was not called for this app") from None

    def currencies(self) -> schemas.Currencies:
        """The exchange rates (cached)."""
        answer = self._state().service.currencies()
        return schemas.CurrenciesSchema().loads(answer.result.entry.value)

    def sources(self, name: str | None = None) -> list[schemas.Source]:
        """The portal brand's sources, optionally filtered by name (cached)."""
        answer = self._state().service.sources(name)
        return schemas.SourceSchema(many=True).loads(answer.result.entry.value)

    def jackpot_for_source(self, source_id: str) -> schemas.Jackpot:
        """The jackpot a source shows to the current player (or to anonymous visitors)."""
        current = self._state()
        answer = current.service.jackpot(source_id, current.load_player())
        return schemas.JackpotSchema().loads(answer.result.entry.value)

    def ticker(self, instance_id: str) -> schemas.Ticker:
        """The ticker of a jackpot instance (cached; fed by the live stream when it is up)."""
        answer = self._state().service.ticker(instance_id)
        return schemas.TickerSchema().loads(answer.result.entry.value)
