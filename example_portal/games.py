"""The lobby's view model: the brand's games (ThrillConnect sources) and their jackpots."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask_thrillconnect import ThrillConnect
from flask_thrillconnect.errors import ThrillConnectError, UpstreamNotFound

logger = logging.getLogger("example_portal.games")

#: The source whose jackpot heads every page.
SITEWIDE_SOURCE_ID = "sitewide-casino"


@dataclass(frozen=True)
class GameCard:
    """One game of the lobby.

    :param jackpot_id: the instance the current player sees for this game; ``None`` when no
        jackpot fits them or ThrillConnect could not say.
    :param pot_ids: that jackpot's pots (for the simulator's "force a win").
    :param active: whether the jackpot can be won now.
    :param fits_player: ``False`` when ThrillConnect says no jackpot of the game fits the player.
    """

    source_id: str
    name: str
    jackpot_id: str | None = None
    pot_ids: tuple[str, ...] = ()
    active: bool = False
    opt_in_required: bool = False
    fits_player: bool = True


@dataclass(frozen=True)
class Lobby:
    """What the lobby shows; ``available`` is ``False`` when the game list could not load."""

    games: tuple[GameCard, ...]
    available: bool


def load_lobby(tc: ThrillConnect) -> Lobby:
    """The brand's games except the sitewide one, each with the jackpot the player sees."""
    try:
        sources = tc.sources()
    except ThrillConnectError as exc:
        logger.warning("the game list is unavailable: %s", exc)
        return Lobby((), available=False)
    games = tuple(
        _game_card(tc, source.source_id, source.source_name)
        for source in sorted(sources, key=lambda source: source.source_name)
        if source.source_id != SITEWIDE_SOURCE_ID
    )
    return Lobby(games, available=True)


def _game_card(tc: ThrillConnect, source_id: str, name: str) -> GameCard:
    try:
        jackpot = tc.jackpot_for_source(source_id)
    except UpstreamNotFound:
        return GameCard(source_id, name, fits_player=False)
    except ThrillConnectError as exc:
        # The ticker widget shows its own "unavailable" state; the card still renders.
        logger.warning("the jackpot of %s is unavailable: %s", source_id, exc)
        return GameCard(source_id, name)
    return GameCard(
        source_id,
        name,
        jackpot_id=jackpot.id,
        pot_ids=tuple(pot.id for pot in jackpot.pots),
        active=jackpot.status == "Active",
        opt_in_required=jackpot.opt_in_required,
    )
