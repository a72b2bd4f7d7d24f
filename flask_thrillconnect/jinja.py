"""The ``thrillconnect`` Jinja global: assets, the CSRF token and the widgets' view models.

Imported macros do not see context processors, so everything the macros in
``thrillconnect/widgets.html`` need comes through this one namespaced global, which
:meth:`~flask_thrillconnect.ThrillConnect.init_app` registers on the app's Jinja environment.

Rendering never raises into the portal's page: when ThrillConnect fails and nothing is cached,
a view model says ``unavailable`` and the widget renders that state. Within one request, the
first upstream failure makes every later lookup answer from the cache only, so a page with many
widgets costs one upstream timeout, not one per widget.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency, format_percent
from babel.support import NullTranslations
from flask import has_request_context, request, url_for
from markupsafe import Markup

from . import __version__, i18n, models
from .cache import CacheWaitTimeout
from .errors import ThrillConnectError, is_upstream_failure
from .jackpots import Answer, JackpotService
from .security import make_csrf_token
from .state import current_state
from .widget_views import ContributionChoice, JackpotView, OptInView, PotView

if TYPE_CHECKING:
    from .player import Player

__all__ = ["TemplateGlobal"]

logger = logging.getLogger("flask_thrillconnect.jinja")

#: Used when neither the player nor the browser names a locale Babel knows.
DEFAULT_LOCALE = "en"
#: ``Accept-Language`` entries tried, best first; the header is the browser's, so bounded.
_MAX_LANGUAGES = 8
#: Sources of an instance tried to find the player's opt-in state for an ``instance_id``.
_MAX_SOURCES_PER_INSTANCE = 3
#: How many contribution choices a Fixed contribution offers: ``v, 2v, … 10v``.
_FIXED_STEPS = 10
_PERCENT_STEP = Decimal("0.01")

# --------------------------------------------------------------------------------------------
# Per-request memory: one lookup per key, one upstream failure per page
# --------------------------------------------------------------------------------------------


@dataclass
class _RenderMemo:
    """What one request has looked up so far (kept in the request's environ, so that it dies
    with the request even where a test keeps the app context, and ``flask.g``, alive)."""

    upstream_failed: bool = False
    lookups: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    player_loaded: bool = False
    player: Player | None = None
    locale: Locale | None = None
    translations: NullTranslations | None = None
    ids: int = 0


_MISSING = object()
_MEMO_KEY = "flask_thrillconnect.render"


def _is_upstream_failure(exc: BaseException) -> bool:
    return is_upstream_failure(exc) or isinstance(exc, CacheWaitTimeout)


# --------------------------------------------------------------------------------------------
# The global
# --------------------------------------------------------------------------------------------


class TemplateGlobal:
    """The ``thrillconnect`` object in templates. Stateless: it reads the current app's
    :class:`~flask_thrillconnect.state.State` and keeps per-request memory with the request.

    Template API::

        {{ thrillconnect.assets(nonce=csp_nonce) }}
        {{ thrillconnect.csrf_token() }}
        {{ thrillconnect.format_money(amount, "EUR") }}
        {% set view = thrillconnect.jackpot_view(source_id="egyptian-gold") %}
    """

    # -- page assets and security ---------------------------------------------------------

    def assets(self, nonce: str | Callable[[], str] | None = None) -> Markup:
        """The stylesheet link and the deferred script, once per page.

        The script's configuration travels in ``data-`` attributes of its tag (no inline
        JavaScript): ``data-tc-base`` (the blueprint's URL prefix), ``data-tc-events`` (the relay
        WebSocket path), ``data-tc-player`` (the player's id, never a token),
        ``data-tc-currency`` (display currency; empty for anonymous visitors),
        ``data-tc-csrf`` (the player's ``X-CSRFToken`` for the script's ``optIn()``; left out
        for anonymous visitors),
        ``data-tc-locale`` (BCP 47), ``data-tc-rates`` (``{"base_currency", "multipliers"}``
        as JSON; left out when the exchange rates are unavailable), ``data-tc-texts`` (the
        script's texts in the page's language, ``{key: text}`` as JSON, only those that differ
        from the script's English; left out on an English page) and ``data-tc-live="off"``
        (when :meth:`live_updates` is false).

        :param nonce: the page's CSP nonce, put on both tags: a string, or a callable answering
            it (Flask-Talisman's ``csp_nonce``, passed with or without the call). No attribute
            when it is ``None`` or empty.
        """
        base = self.base_url()
        config: dict[str, str] = {
            "data-tc-config": "",
            "data-tc-base": base,
            "data-tc-events": f"{base}/v1/events",
            "data-tc-locale": self.locale(),
        }
        player = self._player()
        if player is not None:
            config["data-tc-player"] = player.id
            config["data-tc-currency"] = player.currency
            # For the page API's optIn(): the same token the opt-in widget carries.
            config["data-tc-csrf"] = make_csrf_token(player.id)
        if not self.live_updates():
            config["data-tc-live"] = "off"
        texts = self._script_texts()
        if texts:
            config["data-tc-texts"] = json.dumps(texts, ensure_ascii=False, separators=(",", ":"))
        rates = self._rates()
        if rates is not None:
            config["data-tc-rates"] = models.to_json(
                {"base_currency": rates.base_currency, "multipliers": dict(rates.multipliers)}
            )
        nonce_value = _nonce_text(nonce)
        nonce_attr = Markup(' nonce="{}"').format(nonce_value) if nonce_value else Markup()
        config_attrs = Markup("").join(
            Markup(' {}="{}"').format(name, value) for name, value in config.items()
        )
        return Markup(
            '<link rel="stylesheet" href="{css}"{nonce}>\n<script defer src="{js}"{nonce}{config}>'
            "</script>"
        ).format(
            css=self._static_url("thrillconnect.css"),
            js=self._static_url("thrillconnect.js"),
            nonce=nonce_attr,
            config=config_attrs,
        )

    def csrf_token(self) -> str:
        """The signed token ``POST <prefix>/v1/thrillpots/optin`` wants in ``X-CSRFToken``,
        bound to the current player (or to an anonymous visitor)."""
        player = self._player()
        return make_csrf_token(player.id if player else None)

    def base_url(self) -> str:
        """The blueprint's URL prefix as the browser reaches it (``/thrillconnect``)."""
        root = request.script_root if has_request_context() else ""
        return f"{root}{current_state().settings.url_prefix}"

    def live_updates(self) -> bool:
        """Whether the page's widgets can expect live updates: not for anonymous visitors of a
        portal without ``THRILLCONNECT_SERVICE_TOKEN`` (players' streams are their own; there
        is no service stream to share with visitors), whose tickers then say so instead of
        "reconnecting"."""
        return bool(current_state().settings.service_token) or self._player() is not None

    # -- viewer: locale, currency, money --------------------------------------------------

    def player_id(self) -> str | None:
        """The current player's id (not a secret), or ``None`` for anonymous visitors."""
        player = self._player()
        return player.id if player else None

    def locale(self) -> str:
        """The viewer's locale in BCP 47 form (``sv-SE``): ``Player.locale``, else the best
        ``Accept-Language`` match Babel knows, else ``en``."""
        return _bcp47(self._locale())

    def display_currency(self, currency: str) -> str:
        """The currency an amount in ``currency`` is shown in: the player's when exchange rates
        convert between the two, else ``currency`` itself (always for anonymous visitors)."""
        player = self._player()
        if player is None or player.currency == currency:
            return currency
        rates = self._rates()
        if rates is None or not {currency, player.currency} <= rates.multipliers.keys():
            return currency
        return player.currency

    def format_money(self, amount: Decimal | int | float | str, currency: str) -> str:
        """``amount`` in ``currency`` converted to the viewer's currency and formatted in their
        locale (``£8.59``, ``116 761,00 kr``). Never raises: an unknown currency formats as is.
        """
        try:
            value = Decimal(str(amount))
        except (InvalidOperation, ValueError):
            return str(amount)
        target = self.display_currency(currency)
        if target != currency:
            rates = self._rates()
            assert rates is not None  # display_currency only converts with known rates
            value = rates.convert(value, currency, target)
        return self._format_currency(value, target)

    # -- texts in the page's language -----------------------------------------------------

    def gettext(self, message: str, **variables: Any) -> str:
        """``message`` (an English text of the package's catalogues) in the page's language,
        its ``%(name)s`` placeholders filled from ``variables``; the widgets' template calls it
        ``_``. The language is Flask-Babel's locale when the portal uses Flask-Babel, else
        :meth:`locale`'s; a text without a translation stays English."""
        return i18n.translate(self._translations(), message, **variables)

    # -- view models --------------------------------------------------------------------------

    def jackpot_view(
        self,
        source_id: str | None = None,
        instance_id: str | None = None,
        title: str | None = None,
    ) -> JackpotView:
        """What ``jackpot_ticker`` shows: the jackpot a source shows the current player, or an
        instance's ticker. Never raises; see :class:`JackpotView` for the states.

        :param source_id: the source (a game code…); exactly one of this and ``instance_id``.
        :param title: the heading; by default the source's name.
        """
        if not _one_of(source_id, instance_id, "jackpot_ticker"):
            return JackpotView(
                "unavailable", source_id, instance_id, title or self.gettext("Jackpot")
            )
        try:
            return self._jackpot_view(source_id, instance_id, title)
        except Exception as exc:
            self._log_failure("jackpot ticker", exc)
            title = title or self._source_name(source_id) or self.gettext("Jackpot")
            return JackpotView("unavailable", source_id, instance_id, title)

    def optin_view(self, source_id: str | None = None, instance_id: str | None = None) -> OptInView:
        """What ``optin_widget`` shows: the current player's opt-in state and contribution
        choices. Never raises; see :class:`OptInView` for the states."""
        if not _one_of(source_id, instance_id, "optin_widget"):
            return OptInView("unavailable", source_id, instance_id)
        try:
            if self._player() is None:
                return OptInView("anonymous", source_id, instance_id)
            csrf_token = self.csrf_token()
            return self._optin_view(source_id, instance_id, csrf_token)
        except Exception as exc:
            self._log_failure("opt-in widget", exc)
            return OptInView("unavailable", source_id, instance_id)

    def dom_id(self, prefix: str) -> str:
        """An element id unique within the page (``tc-ticker-3``), for ``aria-labelledby``."""
        memo = self._memo()
        memo.ids += 1
        return f"{prefix}-{memo.ids}"

    # -- building the views -----------------------------------------------------------------

    def _jackpot_view(
        self, source_id: str | None, instance_id: str | None, title: str | None
    ) -> JackpotView:
        if source_id is not None:
            jackpot, stale = self._jackpot(source_id)
            currency, status = jackpot.currency, jackpot.status
            pots: tuple[models.JackpotPot | models.TickerPot, ...] = jackpot.pots
            instance_id = jackpot.id
            title = title or self._source_name(source_id)
        else:
            assert instance_id is not None
            ticker, stale = self._ticker(instance_id)
            currency, status, pots = ticker.currency, ticker.status, ticker.pots
            if not title:
                title = next(filter(None, map(self._source_name, ticker.allowed_sources)), None)
        display = self.display_currency(currency)
        note = i18n.STATUS_NOTES.get(status)
        return JackpotView(
            state="stale" if stale else "live",
            source_id=source_id,
            instance_id=instance_id,
            title=title or self.gettext("Jackpot"),
            status=status,
            status_note=self.gettext(note) if note else None,
            currency=currency,
            display_currency=display,
            pots=tuple(
                PotView(
                    id=pot.id,
                    label=_pot_label(pot.id),
                    value=_decimal_text(pot.current_value),
                    display=self.format_money(pot.current_value, currency),
                )
                for pot in pots
            ),
        )

    def _optin_view(
        self, source_id: str | None, instance_id: str | None, csrf_token: str
    ) -> OptInView:
        if source_id is not None:
            jackpot, stale = self._jackpot(source_id)
        else:
            assert instance_id is not None
            found = self._jackpot_of_instance(instance_id)
            if found is None:
                return OptInView("unavailable", None, instance_id)
            jackpot, stale = found
        status = jackpot.optin_status
        preferred = status.preferred_contribution_value if status else None
        return OptInView(
            state="stale" if stale else "live",
            source_id=source_id,
            instance_id=jackpot.id,
            opted_in=status.opted_in if status else None,
            opt_in_required=jackpot.opt_in_required,
            contribution_kind=jackpot.contribution_type.kind,
            currency=jackpot.currency,
            choices=self._contribution_choices(jackpot, preferred),
            csrf_token=csrf_token,
        )

    def _contribution_choices(
        self, jackpot: models.Jackpot, preferred: Decimal | None
    ) -> tuple[ContributionChoice, ...]:
        contribution = jackpot.contribution_type
        low, high = models.contribution_range(contribution)
        if contribution.kind == "Fixed":
            values = [low * step for step in range(1, _FIXED_STEPS + 1)]
        else:
            count = int((high - low) / _PERCENT_STEP) + 1
            values = [low + _PERCENT_STEP * step for step in range(min(count, 100))]
        values = [value for value in values if low <= value <= high]
        if preferred is not None and low <= preferred <= high and preferred not in values:
            values = sorted([*values, preferred])
        selected = preferred if preferred in values else (values[0] if values else None)
        return tuple(
            ContributionChoice(
                value=_decimal_text(value),
                label=self._contribution_label(value, contribution.kind, jackpot.currency),
                selected=value == selected,
            )
            for value in values
        )

    def _contribution_label(self, value: Decimal, kind: str, currency: str) -> str:
        locale = self._locale()
        if kind != "Fixed":
            return format_percent(value, locale=locale)
        # Contributions are taken in the jackpot's currency; the player's is a hint beside it.
        label = self._format_currency(value, currency)
        shown = self.display_currency(currency)
        if shown != currency:
            label = f"{label} (≈ {self.format_money(value, currency)})"
        return label

    # -- cached lookups, each once per request ------------------------------------------------

    def _jackpot(self, source_id: str) -> tuple[models.Jackpot, bool]:
        player = self._player()
        return self._memoized(
            ("jackpot", source_id),
            lambda service, cached_only: service.jackpot(
                source_id, player, cached_only=cached_only
            ),
            models.JackpotSchema(),
        )

    def _ticker(self, instance_id: str) -> tuple[models.Ticker, bool]:
        return self._memoized(
            ("ticker", instance_id),
            lambda service, cached_only: service.ticker(instance_id, cached_only=cached_only),
            models.TickerSchema(),
        )

    def _jackpot_of_instance(self, instance_id: str) -> tuple[models.Jackpot, bool] | None:
        """The player's jackpot for an instance: through the sources that feed it, since only
        the jackpot-for-source answer carries the player's opt-in state."""
        ticker, _ = self._ticker(instance_id)
        for source_id in ticker.allowed_sources[:_MAX_SOURCES_PER_INSTANCE]:
            try:
                jackpot, stale = self._jackpot(source_id)
            except ThrillConnectError as exc:
                if _is_upstream_failure(exc):
                    raise
                continue  # that source picks nothing for this player; try the next one
            if jackpot.id == instance_id:
                return jackpot, stale
        return None

    def _source_name(self, source_id: str | None) -> str | None:
        if source_id is None:
            return None
        try:
            sources, _ = self._memoized(
                ("sources",),
                lambda service, cached_only: service.sources(cached_only=cached_only),
                models.SourceSchema(many=True),
            )
        except Exception as exc:
            self._log_failure("source names", exc)
            return None
        return next((s.source_name for s in sources if s.source_id == source_id), None)

    def _rates(self) -> models.Currencies | None:
        rates: models.Currencies
        try:
            rates, _ = self._memoized(
                ("currencies",),
                lambda service, cached_only: service.currencies(cached_only=cached_only),
                models.CurrenciesSchema(),
            )
        except Exception as exc:
            self._log_failure("exchange rates", exc)
            return None
        return rates

    def _memoized(
        self, key: tuple[Any, ...], lookup: Callable[[JackpotService, bool], Answer], schema: Any
    ) -> tuple[Any, bool]:
        """``(loaded value, stale)`` of a cached lookup, once per request; a failure is
        remembered too, and an upstream failure turns later lookups to cache-only (a stale
        copy or "unavailable", without another timeout)."""
        memo = self._memo()
        found = memo.lookups.get(key, _MISSING)
        if found is _MISSING:
            try:
                answer = lookup(current_state().service, memo.upstream_failed)
                found = (schema.loads(answer.result.entry.value), answer.result.status == "STALE")
            except Exception as exc:
                if _is_upstream_failure(exc):
                    memo.upstream_failed = True
                found = exc
            memo.lookups[key] = found
        if isinstance(found, BaseException):
            raise found
        value: tuple[Any, bool] = found
        return value

    @staticmethod
    def _memo() -> _RenderMemo:
        memo: _RenderMemo | None = request.environ.get(_MEMO_KEY)
        if memo is None:
            memo = request.environ[_MEMO_KEY] = _RenderMemo()
        return memo

    def _player(self) -> Player | None:
        memo = self._memo()
        if not memo.player_loaded:
            memo.player_loaded = True
            memo.player = current_state().load_player()
        return memo.player

    def _locale(self) -> Locale:
        memo = self._memo()
        if memo.locale is None:
            memo.locale = self._negotiate_locale()
        return memo.locale

    def _negotiate_locale(self) -> Locale:
        player = self._player()
        candidates: list[str] = []
        if player is not None and player.locale:
            candidates.append(player.locale)
        if has_request_context():
            candidates.extend(value for value, _ in list(request.accept_languages)[:_MAX_LANGUAGES])
        for candidate in candidates:
            locale = _parse_locale(candidate)
            if locale is not None:
                return locale
        return Locale.parse(DEFAULT_LOCALE)

    def _translations(self) -> NullTranslations:
        memo = self._memo()
        if memo.translations is None:
            memo.translations = i18n.page_translations(self._locale)
        return memo.translations

    def _script_texts(self) -> dict[str, str]:
        """The page script's texts in the page's language, where they differ from its own."""
        translations = self._translations()
        texts = {key: translations.gettext(text) for key, text in i18n.JS_TEXTS.items()}
        return {key: text for key, text in texts.items() if text != i18n.JS_TEXTS[key]}

    def _format_currency(self, value: Decimal, currency: str) -> str:
        try:
            return format_currency(value, currency, locale=self._locale())
        except (ValueError, UnknownLocaleError, InvalidOperation):
            return f"{value:.2f} {currency}"

    def _static_url(self, filename: str) -> str:
        # The version busts browser caches when an upgrade changes the script.
        return url_for("thrillconnect.static", filename=f"thrillconnect/{filename}", v=__version__)

    @staticmethod
    def _log_failure(what: str, exc: Exception) -> None:
        if isinstance(exc, ThrillConnectError):
            logger.warning("thrillconnect %s unavailable: %s", what, exc)
        else:
            logger.exception("thrillconnect %s failed to render", what)


def _nonce_text(nonce: str | Callable[[], str] | None) -> str:
    """The nonce as text: a callable is called (Flask-Talisman's ``csp_nonce`` is a bound method,
    which formatted as is would render ``nonce="<bound method …>"``)."""
    if callable(nonce):
        nonce = nonce()
    if nonce is None:
        return ""
    if not isinstance(nonce, str):
        raise TypeError(
            "assets(nonce=…) takes a string or a callable answering one, "
            f"not {type(nonce).__name__}"
        )
    return nonce


def _one_of(source_id: str | None, instance_id: str | None, macro: str) -> bool:
    if (source_id is None) == (instance_id is None):
        logger.error("%s needs exactly one of source_id and instance_id", macro)
        return False
    return True


def _parse_locale(name: str) -> Locale | None:
    try:
        return Locale.parse(name.replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        return None


def _bcp47(locale: Locale) -> str:
    return "-".join(filter(None, (locale.language, locale.script, locale.territory)))


def _pot_label(pot_id: str) -> str:
    return pot_id.replace("_", " ").replace("-", " ").strip().capitalize() or pot_id


def _decimal_text(value: Decimal) -> str:
    """``Decimal("10.50")`` → ``"10.50"``, ``Decimal("1E+1")`` → ``"10"``: plain, exact."""
    return format(value, "f")
