"""The ``ThrillConnect`` extension object: ``init_app``, the callbacks, server-side helpers."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from . import models
from .config import read_settings
from .player import Player
from .state import State, current_state

PlayerLoader = Callable[[], Player | None]
AdminCheck = Callable[[], bool]


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

    def call_player_loader(self) -> Player | None:
        """The registered ``player_loader``'s answer (``None`` when none is registered)."""
        return self._player_loader() if self._player_loader is not None else None

    def call_admin_check(self) -> bool:
        """The registered ``admin_check``'s answer (``False`` when none is registered)."""
        return bool(self._admin_check()) if self._admin_check is not None else False

    # -- server-side helpers, sharing the blueprint's cache ---------------------------------

    def currencies(self) -> models.Currencies:
        """The exchange rates (cached)."""
        answer = current_state().service.currencies()
        currencies: models.Currencies = models.CurrenciesSchema().loads(answer.result.entry.value)
        return currencies

    def sources(self, name: str | None = None) -> list[models.Source]:
        """The portal brand's sources, optionally filtered by name (cached)."""
        answer = current_state().service.sources(name)
        sources: list[models.Source] = models.SourceSchema(many=True).loads(
            answer.result.entry.value
        )
        return sources

    def jackpot_for_source(self, source_id: str) -> models.Jackpot:
        """The jackpot a source shows to the current player (or to anonymous visitors)."""
        current = current_state()
        answer = current.service.jackpot(source_id, current.load_player())
        jackpot: models.Jackpot = models.JackpotSchema().loads(answer.result.entry.value)
        return jackpot

    def ticker(self, instance_id: str) -> models.Ticker:
        """The ticker of a jackpot instance (cached; fed by the live stream when it is up)."""
        answer = current_state().service.ticker(instance_id)
        ticker: models.Ticker = models.TickerSchema().loads(answer.result.entry.value)
        return ticker
