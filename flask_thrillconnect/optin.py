"""Opting a player in or out: a ``PlayerOptInRequest`` on a player connection.

ThrillConnect takes opt-in changes only over the player's own WebSocket
(authenticated with the wallet token) and answers with an ``OptInEvent`` or an
``Error`` envelope. This module sends one request and waits, bounded, for that
answer.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from .client import ThrillConnectClient
from .errors import (
    UpstreamBadRequest,
    UpstreamError,
    UpstreamForbidden,
    UpstreamNotFound,
    UpstreamTimeout,
)
from .models import OptInEvent, load_envelope, player_opt_in_request_json, subscribe_request_json
from .player import Player
from .upstream_ws import open_stream

#: Upstream ``Error`` codes: the exception and the status the browser gets. These
#: refusals are about the player's request, not the portal's credentials.
_REFUSALS: dict[str, tuple[type[UpstreamError], int]] = {
    "instance_not_found": (UpstreamNotFound, 404),
    "not_eligible": (UpstreamForbidden, 403),
    "contribution_out_of_range": (UpstreamBadRequest, 400),
}

_SUBSCRIBE_OPT_IN = subscribe_request_json([{"source": "thrillpots", "event_type": "OptInEvent"}])


def send_opt_in(
    client: ThrillConnectClient,
    player: Player,
    instance_id: str,
    opt_in: bool,
    contribution_value: Decimal | None = None,
    *,
    timeout: float,
) -> OptInEvent:
    """Send the request on a fresh player connection; return the confirmed status.

    :raises UpstreamError: ThrillConnect's refusal, or :class:`UpstreamTimeout`
        when no answer came within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    url = client.player_stream_url(player.token, player.currency)
    with open_stream(url, open_timeout=timeout, ping_interval=None) as stream:
        stream.send(_SUBSCRIBE_OPT_IN)
        # Every player field comes from the server-side Player, never from the browser.
        stream.send(
            player_opt_in_request_json(
                instance_id=instance_id,
                player_id=player.id,
                brand_id=client.owner_id,
                player_country=player.country_code,
                opt_in=opt_in,
                contribution_value=contribution_value,
            )
        )
        return _await_answer(stream, player.id, instance_id, deadline)


def _await_answer(stream: Any, player_id: str, instance_id: str, deadline: float) -> OptInEvent:
    # Every receive gets what is left of the deadline, so the whole wait is bounded.
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            envelope = load_envelope(stream.recv(timeout=remaining))
        except TimeoutError:
            break
        if envelope.msg_type == "Error" and envelope.msg_name == "PlayerOptInRequest":
            raise refusal(envelope.data.code, envelope.data.message)
        data = envelope.data
        if (
            isinstance(data, OptInEvent)
            and data.instance_id == instance_id
            and data.player_id == player_id
        ):
            return data
    raise UpstreamTimeout("ThrillConnect did not confirm the opt-in in time")


def refusal(code: str, message: str) -> UpstreamError:
    """The exception for an upstream ``Error`` answer to an opt-in request."""
    exc_type, status = _REFUSALS.get(code, (UpstreamBadRequest, 400))
    # The refusal's text is written for players ("not eligible"): a browser may see it.
    exc = exc_type(message, error=code, public=message)
    exc.code = status
    return exc
