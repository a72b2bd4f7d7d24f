"""The pages: the lobby (games, jackpots, win feed) and the CORS rules admin page."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, send_from_directory
from flask_login import current_user
from werkzeug.wrappers import Response

from .games import SITEWIDE_SOURCE_ID, load_lobby
from .state import portal_state

bp = Blueprint("lobby", __name__)


@bp.get("/")
def lobby() -> str:
    return render_template(
        "portal/lobby.html",
        lobby=load_lobby(portal_state().tc),
        sitewide_source_id=SITEWIDE_SOURCE_ID,
        simulator_mode=portal_state().simulator is not None,
    )


@bp.get("/admin/cors")
def cors_admin() -> str:
    if not current_user.is_admin:
        abort(403)
    return render_template("portal/cors_admin.html")


@bp.get("/favicon.ico")
def favicon() -> Response:
    # Browsers ask for it whatever the page says; a 404 would be a console error.
    return send_from_directory(
        current_app.static_folder or "static", "favicon.svg", mimetype="image/svg+xml"
    )
