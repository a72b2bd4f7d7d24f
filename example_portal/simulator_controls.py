"""Simulator mode only: force a win and tick now, from the lobby.

Both answer JSON to the portal's script (``Accept: application/json``) and otherwise redirect
back to the lobby with a message, so the forms also work without JavaScript.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, flash, jsonify, redirect, request, url_for
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Response

from .forms import csrf_protected
from .state import current_login, portal_state

logger = logging.getLogger("example_portal.simulator_controls")

bp = Blueprint("simulator", __name__, url_prefix="/simulator")

_ID_LIMIT = 128


def _field(name: str, *, required: bool) -> str | None:
    value = request.form.get(name, "").strip()
    if not value:
        if required:
            raise BadRequest(f"{name} is missing")
        return None
    if len(value) > _ID_LIMIT or not value.isprintable():
        raise BadRequest(f"{name} is not valid")
    return value


def _answer(ok: bool, message: str, status: int = 200, **extra: Any) -> Response:
    if request.accept_mimetypes.best == "application/json":
        response = jsonify({"ok": ok, "message": message, **extra})
        response.status_code = status
        return response
    flash(message, "info" if ok else "error")
    return redirect(url_for("lobby.lobby"))


@bp.post("/win")
@csrf_protected
def force_win() -> Response:
    """Make a pot of a jackpot win now; the logged-in player (if any) is the winner."""
    from flask_thrillconnect.testing import SimulatorControlError

    instance_id = _field("instance_id", required=True)
    pot_id = _field("pot_id", required=False)
    login = current_login()
    winner = login.player.id if login and login.player else None
    try:
        event = portal_state().simulator.win(instance_id, pot_id=pot_id, player_id=winner)
    except SimulatorControlError as exc:
        logger.info("forced win refused: %s", exc)
        return _answer(False, f"The simulator refused: {exc}", 409)
    pot = event.get("win_pot_id", pot_id or "")
    who = "you" if winner and event.get("player_id") == winner else "another player"
    return _answer(True, f"Forced a win of the {pot} pot for {who}.", event=event)


@bp.post("/tick")
@csrf_protected
def tick_now() -> Response:
    """One tick now: every active pot grows and the tickers move."""
    portal_state().simulator.tick()
    return _answer(True, "Ticked: every active pot grew.")
