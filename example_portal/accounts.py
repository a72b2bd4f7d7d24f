"""Logging in and out.

Simulator mode lists the simulator's wallet players to pick from; real mode asks for a player
id, wallet token, currency and country. Either way, "administrator" is a checkbox: this is a
demo, a real portal decides who administers with its own accounts.
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from flask_thrillconnect import Player
from flask_thrillconnect.errors import ThrillConnectError

from .forms import csrf_protected
from .players import LOCALE_BY_COUNTRY, Login, demo_player, demo_players
from .state import end_session, portal_state, start_session

bp = Blueprint("accounts", __name__)


def _brand_id() -> str:
    return current_app.config["THRILLCONNECT_BRAND_ID"]


@bp.get("/login")
def login_page() -> str:
    simulator = portal_state().simulator
    players = demo_players(simulator, _brand_id()) if simulator is not None else []
    return render_template("portal/login.html", demo_players=players)


@bp.post("/login")
@csrf_protected
def login() -> Response | tuple[str, int]:
    is_admin = request.form.get("admin") == "on"
    player = _demo_login() if portal_state().simulator is not None else _real_login()
    if player is None and not is_admin:
        return _login_failed()
    start_session(Login(player, is_admin))
    return redirect(url_for("lobby.lobby"))


def _demo_login() -> Player | None:
    player_id = request.form.get("player_id", "")
    if not player_id:
        return None  # an administrator who does not play
    return demo_player(portal_state().simulator, player_id, _brand_id())


def _real_login() -> Player | None:
    form = request.form
    if not form.get("player_id") and not form.get("token"):
        return None
    country = form.get("country", "").strip().upper() or None
    try:
        return Player(
            id=form.get("player_id", "").strip(),
            token=form.get("token", "").strip(),
            currency=form.get("currency", "").strip().upper(),
            country_code=country,
            locale=LOCALE_BY_COUNTRY.get(country or ""),
        )
    except (ThrillConnectError, TypeError):
        return None


def _login_failed() -> tuple[str, int]:
    flash("Those details do not match a player. Check them and try again.", "error")
    return login_page(), 400


@bp.post("/logout")
@csrf_protected
def logout() -> Response:
    end_session()
    flash("You are logged out.", "info")
    return redirect(url_for("lobby.lobby"))
