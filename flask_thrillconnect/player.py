"""The portal's player, as the ``player_loader`` callback describes them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import validation

_LOCALE = re.compile(r"[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8}){0,3}")


@dataclass(frozen=True, slots=True)
class Player:
    """A logged-in player of the portal.

    :param id: the player's id in the operator's wallet (``player_00001``).
    :param token: the wallet session token. It is used server side only, for the
        player's upstream WebSocket, and is left out of ``repr`` so that it never
        lands in a log line.
    :param currency: ISO 4217 code the player plays in (``EUR``).
    :param country_code: ISO 3166 alpha-2 country (``MT``), or ``None``.
    :param segments: the player's segments (``("vip",)``).
    :param locale: how the player reads numbers and money (``de_DE``, ``en-GB``); when
        ``None``, the widgets use the browser's ``Accept-Language``.
    """

    id: str
    token: str = field(repr=False)
    currency: str
    country_code: str | None = None
    segments: tuple[str, ...] = ()
    locale: str | None = None

    def __post_init__(self) -> None:
        # Values from the portal's own session still reach upstream URLs, so they
        # are checked like anything else that does.
        validation.identifier(self.id, "player.id")
        validation.currency_code(self.currency)
        if self.country_code is not None:
            validation.country_code(self.country_code)
        object.__setattr__(self, "segments", validation.segments(self.segments))
        if self.locale is not None and not (
            isinstance(self.locale, str) and _LOCALE.fullmatch(self.locale)
        ):
            raise TypeError("Player.locale must be a locale name such as 'de_DE' or 'en-GB'")
        if not isinstance(self.token, str) or not self.token:
            raise TypeError("Player.token must be a non-empty string")
