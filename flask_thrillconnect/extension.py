"""The ``ThrillConnect`` extension object: ``init_app``, the callbacks, server-side helpers."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import TypeVar, overload

from flask import Flask, current_app
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import InternalServerError, default_exceptions

from . import models
from .config import read_settings
from .errors import ThrillConnectError
from .health import check_on_start
from .player import Player
from .state import State, current_state

PlayerLoader = Callable[[], Player | None]
AdminCheck = Callable[[], bool]

logger = logging.getLogger("flask_thrillconnect")

_T = TypeVar("_T")
_D = TypeVar("_D")


class _Raise(enum.Enum):
    """The default of ``default=``: raise instead of standing in."""

    RAISE = enum.auto()


_RAISE = _Raise.RAISE


def _or_default(call: Callable[[], _T], default: _D | _Raise) -> _T | _D:
    if default is _RAISE:
        return call()
    try:
        return call()
    except ThrillConnectError as exc:
        logger.debug("a server-side helper answers its default: %r", exc)
        return default


def render_helper_error(exc: ThrillConnectError) -> ResponseReturnValue:
    """A server-side helper's error that reached Flask in one of the portal's own views: the
    portal's own error page for the matching status (404 for an unknown source, 502/503/504
    when ThrillConnect fails), with a text that names no upstream URL or path.

    Registered by ``init_app`` unless the app already handles
    :class:`~flask_thrillconnect.errors.ThrillConnectError`; a handler the portal registers
    later replaces it. The blueprint's own routes answer JSON instead.
    """
    if exc.code >= 500:
        logger.warning("ThrillConnect failed in a portal view: %s", exc)
    http_error = default_exceptions.get(exc.code, InternalServerError)(exc.public_message)
    return current_app.handle_http_exception(http_error)


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
        from .security import stand_aside_from_csrf_protect
        from .views import bp

        settings = read_settings(app)
        state = State(self, settings)
        if settings.check_on_start:
            try:
                check_on_start(state.client, settings.owner_id)
            except BaseException:
                state.close()
                raise
        app.extensions["thrillconnect"] = state
        if ThrillConnectError not in app.error_handler_spec[None][None]:
            app.register_error_handler(ThrillConnectError, render_helper_error)
        app.register_blueprint(bp, url_prefix=settings.url_prefix)
        # Flask-WTF's CSRFProtect would refuse our token: the blueprint keeps its own check.
        stand_aside_from_csrf_protect(app, bp)
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

    def call_player_loader(self) -> Player | None:
        """The registered ``player_loader``'s answer (``None`` when none is registered)."""
        return self._player_loader() if self._player_loader is not None else None

    def call_admin_check(self) -> bool:
        """The registered ``admin_check``'s answer (``False`` when none is registered)."""
        return bool(self._admin_check()) if self._admin_check is not None else False

    # -- server-side helpers, sharing the blueprint's cache ---------------------------------
    #
    # Each raises an error of the package's family (ThrillConnectError) when it has no answer;
    # ``default=`` makes it answer that value instead (``default=None`` in templates).

    @overload
    def currencies(self) -> models.Currencies: ...
    @overload
    def currencies(self, *, default: _D) -> models.Currencies | _D: ...

    def currencies(self, *, default: object = _RAISE) -> object:
        """The exchange rates (cached).

        :param default: answered instead of raising when there is no answer.
        :raises ThrillConnectError: see :doc:`api` for the subclasses.
        """
        return _or_default(_currencies, default)

    @overload
    def sources(self, name: str | None = None) -> list[models.Source]: ...
    @overload
    def sources(self, name: str | None = None, *, default: _D) -> list[models.Source] | _D: ...

    def sources(self, name: str | None = None, *, default: object = _RAISE) -> object:
        """The portal brand's sources, optionally filtered by name (cached).

        :param default: answered instead of raising when there is no answer (``[]``).
        :raises ThrillConnectError: see :doc:`api` for the subclasses.
        """
        return _or_default(lambda: _sources(name), default)

    @overload
    def jackpot_for_source(self, source_id: str) -> models.Jackpot: ...
    @overload
    def jackpot_for_source(self, source_id: str, *, default: _D) -> models.Jackpot | _D: ...

    def jackpot_for_source(self, source_id: str, *, default: object = _RAISE) -> object:
        """The jackpot a source shows to the current player (or to anonymous visitors).

        :param default: answered instead of raising when there is no answer: an unknown or
            invalid source id, or ThrillConnect unavailable.
        :raises UpstreamNotFound: no such source for the portal's brand.
        :raises InvalidIdentifier: ``source_id`` is not a valid id.
        :raises UpstreamError: ThrillConnect failed and nothing cached could stand in.
        """
        return _or_default(lambda: _jackpot_for_source(source_id), default)

    @overload
    def ticker(self, instance_id: str) -> models.Ticker: ...
    @overload
    def ticker(self, instance_id: str, *, default: _D) -> models.Ticker | _D: ...

    def ticker(self, instance_id: str, *, default: object = _RAISE) -> object:
        """The ticker of a jackpot instance (cached; fed by the live stream when it is up).

        :param default: answered instead of raising when there is no answer.
        :raises UpstreamNotFound: no such instance for the portal's brand.
        :raises InvalidIdentifier: ``instance_id`` is not a valid id.
        :raises UpstreamError: ThrillConnect failed and nothing cached could stand in.
        """
        return _or_default(lambda: _ticker(instance_id), default)

    # -- the cache, for tests and operations ---------------------------------------------------

    def cache_clear(self) -> None:
        """Forget every cached answer of the current app (and the 404s it remembers): the next
        read asks ThrillConnect (``X-Cache: MISS``). In cluster mode, the entries in Redis
        under ``THRILLCONNECT_REDIS_PREFIX`` go too."""
        current_state().service.clear()

    def cache_expire(self) -> None:
        """Make every cached answer of the current app stale now, as if its time to live had
        passed: the next read answers the stale copy (``X-Cache: UPDATING``) and refreshes it
        in the background, or waits for ThrillConnect when no refresh can run."""
        current_state().service.expire()


def _currencies() -> models.Currencies:
    answer = current_state().service.currencies()
    currencies: models.Currencies = models.CurrenciesSchema().loads(answer.result.entry.value)
    return currencies


def _sources(name: str | None) -> list[models.Source]:
    answer = current_state().service.sources(name)
    sources: list[models.Source] = models.SourceSchema(many=True).loads(answer.result.entry.value)
    return sources


def _jackpot_for_source(source_id: str) -> models.Jackpot:
    current = current_state()
    answer = current.service.jackpot(source_id, current.load_player())
    jackpot: models.Jackpot = models.JackpotSchema().loads(answer.result.entry.value)
    return jackpot


def _ticker(instance_id: str) -> models.Ticker:
    answer = current_state().service.ticker(instance_id)
    ticker: models.Ticker = models.TickerSchema().loads(answer.result.entry.value)
    return ticker
