"""The widgets' view models: what the macros of ``thrillconnect/widgets.html`` render.

Plain frozen data built by the template global (:mod:`flask_thrillconnect.jinja`): every
amount already converted and formatted, every state (live, stale, unavailable) decided, so
the templates only lay it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ContributionChoice", "JackpotView", "OptInView", "PotView", "WidgetState"]

WidgetState = Literal["live", "stale", "unavailable"]


@dataclass(frozen=True, slots=True)
class PotView:
    """One pot as a ticker shows it.

    :param id: the pot's id (``minor``), the ``data-tc-pot`` hook.
    :param label: a readable name (``Minor``).
    :param value: the raw value in the jackpot's currency, a decimal string (``data-tc-value``).
    :param display: the value converted to the viewer's currency and formatted in their locale.
    """

    id: str
    label: str
    value: str
    display: str


@dataclass(frozen=True, slots=True)
class JackpotView:
    """A jackpot as the ticker widget shows it.

    :param state: ``live``, ``stale`` (an older copy stands in for a failing upstream) or
        ``unavailable`` (nothing to show).
    :param currency: the jackpot's own currency (``data-tc-currency``).
    :param display_currency: the currency amounts are shown in: the player's when it can be
        converted, else the jackpot's.
    """

    state: WidgetState
    source_id: str | None
    instance_id: str | None
    title: str
    status: str | None = None
    status_note: str | None = None
    currency: str | None = None
    display_currency: str | None = None
    pots: tuple[PotView, ...] = ()

    @property
    def available(self) -> bool:
        return self.state != "unavailable"

    @property
    def stale(self) -> bool:
        """Whether the JavaScript should show the values as not live (stale or unavailable)."""
        return self.state != "live"


@dataclass(frozen=True, slots=True)
class ContributionChoice:
    """One option of the opt-in widget's contribution ``<select>``.

    :param value: what ``POST …/optin`` sends as ``contribution_value`` (a decimal string).
    :param label: the amount formatted in the jackpot's currency, or a percentage.
    """

    value: str
    label: str
    selected: bool = False


@dataclass(frozen=True, slots=True)
class OptInView:
    """The current player's opt-in state for one jackpot.

    :param state: ``anonymous`` (nobody logged in: no form), ``live``, ``stale`` or
        ``unavailable``.
    :param opted_in: ``None`` when the state could not be found out.
    :param csrf_token: the token the form posts in ``X-CSRFToken`` (logged-in players only).
    """

    state: Literal["anonymous", "live", "stale", "unavailable"]
    source_id: str | None
    instance_id: str | None
    opted_in: bool | None = None
    opt_in_required: bool = False
    contribution_kind: str | None = None
    currency: str | None = None
    choices: tuple[ContributionChoice, ...] = ()
    csrf_token: str | None = None

    @property
    def logged_in(self) -> bool:
        return self.state != "anonymous"

    @property
    def available(self) -> bool:
        return self.state in ("live", "stale")
