"""Logging in and out, with Flask-Login and Flask-WTF forms.

Simulator mode lists the simulator's wallet players to pick from; real mode asks for a player
id, wallet token, currency and country. Either way, "administrator" is a checkbox: this is a
demo, a real portal decides who administers with its own accounts.
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from flask_thrillconnect import Player
from flask_thrillconnect.errors import ThrillConnectError

from .forms import DemoLoginForm, WalletLoginForm
from .players import LOCALE_BY_COUNTRY, Login, demo_player, demo_players
from .state import log_in, log_out, portal_state

bp = Blueprint("accounts", __name__)


def _brand_id() -> str:
    return current_app.config["THRILLCONNECT_BRAND_ID"]


def _login_form() -> DemoLoginForm | WalletLoginForm:
    simulator = portal_state().simulator
    if simulator is None:
        return WalletLoginForm()
    return DemoLoginForm([player.id for player in demo_players(simulator, _brand_id())])


def _login_page(form: DemoLoginForm | WalletLoginForm) -> str:
    simulator = portal_state().simulator
    players = demo_players(simulator, _brand_id()) if simulator is not None else []
    return render_template("portal/login.html", form=form, demo_players=players)


@bp.get("/login")
def login_page() -> str:
    return _login_page(_login_form())


@bp.post("/login")
def login() -> Response | tuple[str, int]:
    form = _login_form()
    if form.validate_on_submit():
        demo = isinstance(form, DemoLoginForm)
        player = _demo_login(form) if demo else _real_login(form)
        if player is not None or form.admin.data:
            log_in(Login(player, is_admin=bool(form.admin.data)))
            return redirect(url_for("lobby.lobby"))
    flash("Those details do not match a player. Check them and try again.", "error")
    return _login_page(form), 400


def _demo_login(form: DemoLoginForm) -> Player | None:
    if not form.player_id.data:
        return None  # an administrator who does not play
    return demo_player(portal_state().simulator, form.player_id.data, _brand_id())


def _real_login(form: WalletLoginForm) -> Player | None:
    if not form.player_id.data and not form.token.data:
        return None
    country = (form.country.data or "").strip().upper() or None
    try:
        return Player(
            id=(form.player_id.data or "").strip(),
            token=(form.token.data or "").strip(),
            currency=(form.currency.data or "").strip().upper(),
            country_code=country,
            locale=LOCALE_BY_COUNTRY.get(country or ""),
        )
    except (ThrillConnectError, TypeError):
        return None


@bp.post("/logout")
def logout() -> Response:
    # A form that is only a button: CSRFProtect has checked its token before this runs.
    log_out()
    flash("You are logged out.", "info")
    return redirect(url_for("lobby.lobby"))
