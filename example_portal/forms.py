"""The portal's forms, on Flask-WTF: ``CSRFProtect`` checks every state-changing request of the
portal (its token in each form's ``csrf_token`` field), and these classes validate the fields.

The blueprint of flask_thrillconnect has its own token (``thrillconnect.csrf_token()``, sent in
``X-CSRFToken`` by the widgets and the CORS page); the extension exempts its routes from
``CSRFProtect`` by itself, so the portal needs no code for it.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, flash, jsonify, render_template, request
from flask_wtf import CSRFProtect, FlaskForm
from flask_wtf.csrf import CSRFError
from werkzeug.wrappers import Response
from wtforms import BooleanField, HiddenField, PasswordField, RadioField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

_ID_LIMIT = 128
_EXPIRED = "The form has expired. Reload the page and try again."


def _printable(form: FlaskForm, field: Any) -> None:
    if field.data and not str(field.data).isprintable():
        raise ValidationError("Only printable characters, please.")


class DemoLoginForm(FlaskForm):
    """Simulator mode: pick one of the simulator's wallet players (or nobody, to administer)."""

    player_id = RadioField("Play as", choices=[])
    admin = BooleanField("Administrator (a demo: no password asked)")

    def __init__(self, player_ids: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.player_id.choices = [(pid, pid) for pid in player_ids] + [("", "Nobody")]


class WalletLoginForm(FlaskForm):
    """Real mode: the player's wallet details (they stay on the server)."""

    player_id = StringField(
        "Player id", validators=[Optional(), Length(max=_ID_LIMIT), Regexp(r"^[A-Za-z0-9_.:\-]+$")]
    )
    token = PasswordField("Wallet token", validators=[Optional(), Length(max=512), _printable])
    currency = StringField("Currency", validators=[Optional(), Regexp(r"^[A-Za-z]{3}$")])
    country = StringField("Country", validators=[Optional(), Regexp(r"^[A-Za-z]{2}$")])
    admin = BooleanField("Administrator (a demo: no password asked)")


class ForceWinForm(FlaskForm):
    """Simulator mode: make a pot of a jackpot win now."""

    instance_id = HiddenField(validators=[DataRequired(), Length(max=_ID_LIMIT), _printable])
    pot_id = StringField(validators=[Optional(), Length(max=_ID_LIMIT), _printable])


def _refused(error: CSRFError) -> Response | tuple[str, int]:
    """403 rather than Flask-WTF's 400: the request was refused, not malformed. JSON for the
    portal's script, the login page with a message for a browser's form."""
    if request.accept_mimetypes.best == "application/json":
        response = jsonify({"ok": False, "message": _EXPIRED})
        response.status_code = 403
        return response
    flash(_EXPIRED, "error")
    return render_template("portal/refused.html"), 403


def init_forms(app: Flask) -> CSRFProtect:
    """Protect every form of the portal with Flask-WTF's ``CSRFProtect``."""
    csrf = CSRFProtect(app)
    app.register_error_handler(CSRFError, _refused)
    return csrf
