"""Simulator mode only: force a win and tick now, from the lobby.

Both answer JSON to the portal's script (``Accept: application/json``) and otherwise redirect
back to the lobby with a message, so the forms also work without JavaScript.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, flash, jsonify, redirect, request, url_for
from flask_login import current_user
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Response

from .forms import ForceWinForm
from .state import portal_state

logger = logging.getLogger("example_portal.simulator_controls")

bp = Blueprint("simulator", __name__, url_prefix="/simulator")


def _answer(ok: bool, message: str, status: int = 200, **extra: Any) -> Response:
    if request.accept_mimetypes.best == "application/json":
        response = jsonify({"ok": ok, "message": message, **extra})
        response.status_code = status
        return response
    flash(message, "info" if ok else "error")
    return redirect(url_for("lobby.lobby"))


@bp.post("/win")
def force_win() -> Response:
    """Make a pot of a jackpot win now; the logged-in player (if any) is the winner."""
    from flask_thrillconnect.testing import SimulatorControlError

    form = ForceWinForm()
    if not form.validate_on_submit():
        problems = (f"{name}: {', '.join(errors)}" for name, errors in form.errors.items())
        raise BadRequest("; ".join(problems))
    winner = current_user.player.id if current_user.player is not None else None
    try:
        event = portal_state().simulator.win(
            form.instance_id.data, pot_id=form.pot_id.data or None, player_id=winner
        )
    except SimulatorControlError as exc:
        logger.info("forced win refused: %s", exc)
        return _answer(False, f"The simulator refused: {exc}", 409)
    pot = event.get("win_pot_id", form.pot_id.data or "")
    who = "you" if winner and event.get("player_id") == winner else "another player"
    return _answer(True, f"Forced a win of the {pot} pot for {who}.", event=event)


@bp.post("/tick")
def tick_now() -> Response:
    """One tick now: every active pot grows and the tickers move (a form that is only a
    button: CSRFProtect has checked its token before this runs)."""
    portal_state().simulator.tick()
    return _answer(True, "Ticked: every active pot grew.")
