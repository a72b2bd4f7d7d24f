"""The portal's player, as the ``player_loader`` callback describes them."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import validation


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
    """

    id: str
    token: str = field(repr=False)
    currency: str
    country_code: str | None = None
    segments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Values from the portal's own session still reach upstream URLs, so they
        # are checked like anything else that does.
        validation.identifier(self.id, "player.id")
        validation.currency_code(self.currency)
        if self.country_code is not None:
            validation.country_code(self.country_code)
        object.__setattr__(self, "segments", validation.segments(self.segments))
        if not isinstance(self.token, str) or not self.token:
            raise TypeError("Player.token must be a non-empty string")
