"""Fault injection (``POST /_sim/faults``): what is injected now, and how a REST request suffers
it. No web framework here: the app turns an injected error into its HTTP answer.

Keys left out of a body keep their value, so ``{}`` changes nothing and answers the current
faults; ``{"rest": null, "ws": null}`` clears all. ``delay`` sleeps then serves; ``hang`` holds
the request until the fault changes (then serves), the simulator stops (503) or
:data:`MAX_HANG_SECONDS` pass (504). ``drop`` acts once and clears itself; ``refuse`` and
``stall`` last until cleared (see :mod:`.connections` for what they do to WebSockets).
"""

from __future__ import annotations

import http
import threading
from typing import Any

from .errors import ApiError, InvalidInput, error_code

#: A ``hang`` fault never holds a request longer than this.
MAX_HANG_SECONDS = 60.0
MAX_DELAY_SECONDS = 60.0

_WS_FAULTS = ("drop", "refuse", "stall")


class Faults:
    """The faults currently injected; REST request threads wait on it for ``delay``/``hang``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._stopping = False
        self.rest: dict[str, Any] | None = None
        self.ws: str | None = None

    @property
    def stalled(self) -> bool:
        """Open WebSockets get no events and no pongs."""
        return self.ws == "stall"

    @property
    def refusing(self) -> bool:
        """New WebSocket upgrades are refused with 503."""
        return self.ws == "refuse"

    def snapshot(self) -> dict[str, Any]:
        """``{"rest": …, "ws": …}`` as the control route shows it."""
        with self._cond:
            return {"rest": dict(self.rest) if self.rest else None, "ws": self.ws}

    def update(self, body: Any) -> bool:
        """Apply a ``/_sim/faults`` body; keys not given stay as they are. Answer whether open
        WebSockets must be dropped now (``drop`` acts once and leaves ``ws`` cleared).

        :raises InvalidInput: for anything but ``rest``/``ws`` with the documented values.
        """
        if not isinstance(body, dict) or not set(body) <= {"rest", "ws"}:
            raise InvalidInput("invalid_body", 'expected an object with "rest" and/or "ws"')
        rest = _validated_rest(body["rest"]) if "rest" in body else self.rest
        ws = body.get("ws", self.ws)
        if ws is not None and ws not in _WS_FAULTS:
            raise InvalidInput("invalid_fault", f"ws must be null or one of {_WS_FAULTS}")
        with self._cond:
            self.rest = rest
            self.ws = None if ws == "drop" else ws
            self._cond.notify_all()
        return ws == "drop"

    def rest_fault(self) -> ApiError | None:
        """Act on the REST fault: the error to answer with, or ``None`` to serve (after the
        ``delay`` or ``hang``, which this call sits out)."""
        with self._cond:
            fault = self.rest
        if fault is None:
            return None
        if "status" in fault:
            status = fault["status"]
            try:
                code = error_code(http.HTTPStatus(status).phrase)
            except ValueError:
                code = "injected_fault"
            return ApiError(status, code, "fault injected by the simulator")
        with self._cond:
            if "delay" in fault:
                self._cond.wait_for(lambda: self._stopping, timeout=fault["delay"])
                released = not self._stopping
            else:
                released = self._cond.wait_for(
                    lambda: self.rest != fault or self._stopping, timeout=MAX_HANG_SECONDS
                )
            stopping = self._stopping
        if stopping:
            return ApiError(503, "service_unavailable", "the simulator is stopping")
        if not released:
            return ApiError(504, "gateway_timeout", "hang fault held the request too long")
        return None

    def stop(self) -> None:
        """Release every request held by a ``delay`` or ``hang``."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()


def _validated_rest(fault: Any) -> dict[str, Any] | None:
    if fault is None:
        return None
    if not isinstance(fault, dict) or len(fault) != 1:
        raise InvalidInput("invalid_fault", 'rest must be null, {"status"}, {"delay"} or {"hang"}')
    ((kind, value),) = fault.items()
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "status" and number and int(value) == value and 400 <= value <= 599:
        return {"status": int(value)}
    if kind == "delay" and number and 0 < value <= MAX_DELAY_SECONDS:
        return {"delay": float(value)}
    if kind == "hang" and value is True:
        return {"hang": True}
    raise InvalidInput(
        "invalid_fault",
        f"rest fault must be status 400-599, delay in (0, {MAX_DELAY_SECONDS:g}] or hang true",
    )
