"""The per-app state of the extension, and the one way to reach it: :func:`current_state`.

The state lives in ``app.extensions["thrillconnect"]``; the views, the template global and the
commands all reach it through :func:`current_state`, so none of them imports the extension
module (which imports them).
"""

from __future__ import annotations

import atexit
import logging
import time
import weakref
from typing import Any, Protocol

from flask import current_app, has_request_context, request

from .cache import ResponseCache, make_storage
from .client import ThrillConnectClient
from .config import Settings
from .errors import ThrillConnectError, is_upstream_failure
from .health import NO_SERVICE_TOKEN, RestProbe
from .jackpots import JackpotService
from .player import Player
from .relay import Relay
from .servers import server_model
from .session_check import warn_if_token_in_cookie_session

__all__ = ["Callbacks", "State", "current_state", "shutdown"]

logger = logging.getLogger("flask_thrillconnect")

#: Where the current request's player is kept: the request's own environ lives and dies with
#: the request (``flask.g`` outlives it where a test pushes an app context, as pytest-flask does).
_PLAYER_KEY = "flask_thrillconnect.player"

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


class Callbacks(Protocol):
    """What the state asks the extension object: the portal's registered callbacks."""

    def call_player_loader(self) -> Player | None: ...

    def call_admin_check(self) -> bool: ...


def current_state() -> State:
    """The current app's state.

    :raises RuntimeError: ``ThrillConnect.init_app`` was not called for the current app.
    """
    try:
        state: State = current_app.extensions["thrillconnect"]
    except KeyError:
        raise RuntimeError("ThrillConnect.init_app(app) was not called for this app") from None
    return state


class State:
    """Everything one app needs: settings, client, cache, relay. Lives in ``app.extensions``."""

    def __init__(self, callbacks: Callbacks, settings: Settings):
        self.callbacks = callbacks
        self.settings = settings
        self.client = ThrillConnectClient(
            settings.url,
            operator_id=settings.operator_id,
            brand_id=settings.brand_id,
            service_token=settings.service_token,
            timeout=settings.timeout,
            ws_url=settings.ws_url,
        )
        cache = ResponseCache(
            make_storage(settings),
            stale_ttl=settings.stale_ttl,
            # Waiters give the leader's fetch as long as it may take, retries included.
            wait_timeout=(self.client.retries + 1) * sum(settings.timeout),
            is_upstream_failure=is_upstream_failure,
        )
        self.service = JackpotService(settings, self.client, cache)
        self.relay = Relay(settings, self.client, self.service)
        self.rest_probe = RestProbe(self._probe_rest)
        _live_states.add(self)

    def load_player(self) -> Player | None:
        """The current request's player from ``player_loader``, once per request."""
        if not has_request_context():
            return None
        if _PLAYER_KEY not in request.environ:
            player = self.callbacks.call_player_loader()
            if player is not None and not isinstance(player, Player):
                raise TypeError("player_loader must return a flask_thrillconnect.Player or None")
            warn_if_token_in_cookie_session(self, player)
            request.environ[_PLAYER_KEY] = player
        loaded: Player | None = request.environ[_PLAYER_KEY]
        return loaded

    def is_admin(self) -> bool:
        return self.callbacks.call_admin_check()

    def health(self) -> dict[str, Any]:
        """``/health/detail``: upstream REST status (probed in the background), stream, relay
        and cache figures, within ~1 s. ``status`` is what the public ``/health`` answers:

        - ``ok``: all is well;
        - ``degraded``: players are served, but not as they should be (see ``problems``);
        - ``down``: ThrillConnect answers neither REST nor the stream: at best stale values.
        """
        answer = self._health()
        # Which server runs the relay (gevent, gthread...), and whether it has room for it:
        # only here, since finding gthread's thread count walks the main thread's stack.
        server = server_model(
            request.environ if has_request_context() else None,
            browsers=answer["relay"]["browsers"],
        )
        answer["relay"]["server"] = server
        if "warning" in server:
            answer["problems"].append(server["warning"])
        return answer

    def _health(self) -> dict[str, Any]:
        rest = self.rest_probe.status()
        relay = self.relay.stats()
        cache = self.service.cache_stats()
        problems: list[str] = []
        if relay.get("cluster") == "redis":
            # Most processes hold no stream of their own: the cluster's holders' status counts.
            stream_ok = stream_live = relay["upstream_status"] == "connected"
        else:
            stream_ok = relay["upstream"].get("state") in (None, "idle", "connected")
            stream_live = relay["upstream"].get("state") == "connected"
        if not self.settings.service_token:
            # Players have streams of their own; anonymous visitors have none to share.
            relay["upstream"]["service"] = NO_SERVICE_TOKEN
            stream_live = stream_ok = False
            problems.append(
                "no service token: anonymous visitors get no live updates "
                "(set THRILLCONNECT_SERVICE_TOKEN)"
            )
        elif not stream_ok:
            problems.append("the upstream stream is down: updates are not live")
        if not rest["ok"]:
            problems.append("ThrillConnect's REST API does not answer: cached values stand in")
        # Cluster mode fell back to per-process: players are served, the cluster is not one.
        cluster_ok = (
            relay.get("cluster") not in ("fallback", "rejoining")
            and cache.get("mode") != "fallback"
        )
        if not cluster_ok:
            problems.append("cluster mode runs per process: Redis is not shared now")
        if not rest["ok"] and not stream_live:
            status = "down"
        else:
            status = "ok" if rest["ok"] and stream_ok and cluster_ok else "degraded"
        return {
            "status": status,
            "problems": problems,
            "upstream": {"rest": rest, "stream": relay.pop("upstream")},
            "relay": relay,
            "cache": cache,
        }

    def liveness(self) -> dict[str, str]:
        """The public ``/health``: ``{"status": "ok" | "degraded" | "down"}`` and nothing
        more (no version, error text or figures)."""
        return {"status": self._health()["status"]}

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
        self.service.close()
