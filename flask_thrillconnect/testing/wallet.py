"""The operator's wallet: the players the simulator knows, by id and by session token.

A player connection is admitted with a wallet token; ``POST /_sim/players`` adds players.
Thread-safe on its own lock; the world may call in while holding its own (never the reverse).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from .domain import BRAND_IDS, EXCHANGE_RATES, WalletPlayer
from .errors import InvalidInput, Rejected

_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_TOKEN = re.compile(r"[!-~]{1,512}")  # printable ASCII, no whitespace
_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_MAX_SEGMENTS = 20


def wallet_entry(player: WalletPlayer) -> dict[str, Any]:
    """What the control side shows of a wallet player: its profile and its token."""
    return {
        "id": player.id,
        "currency": player.currency,
        "country": player.country,
        "segments": list(player.segments),
        "operator_id": player.operator_id,
        "brand_id": player.brand_id,
        "token": player.token,
    }


class Wallet:
    """The wallet players.

    :param players: the starting players.
    """

    def __init__(self, players: Iterable[WalletPlayer]) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, WalletPlayer] = {}
        self._by_token: dict[str, WalletPlayer] = {}
        for player in players:
            self._register(player)

    def get(self, player_id: str) -> WalletPlayer | None:
        """The player called ``player_id``, if any."""
        with self._lock:
            return self._by_id.get(player_id)

    def for_token(self, token: str | None) -> WalletPlayer | None:
        """The player a session token belongs to, if any."""
        if not token:
            return None
        with self._lock:
            return self._by_token.get(token)

    def players(self) -> list[WalletPlayer]:
        """Every player, by id (a stable order keeps random picks repeatable)."""
        with self._lock:
            return sorted(self._by_id.values(), key=lambda player: player.id)

    def entries(self) -> dict[str, dict[str, Any]]:
        """Player id → :func:`wallet_entry` for every player."""
        with self._lock:
            return {player.id: wallet_entry(player) for player in self._by_id.values()}

    def add(
        self,
        id: str,
        token: str,
        currency: str,
        country: str,
        segments: Sequence[str] = (),
        brand_id: str = "brand1",
    ) -> dict[str, Any]:
        """Register (or replace) a player; answer its :func:`wallet_entry`.

        :raises InvalidInput: a field is malformed.
        :raises Rejected: the token already belongs to another player.
        """
        checks = (
            (
                isinstance(id, str) and _IDENTIFIER.fullmatch(id),
                "id must be 1-128 of [A-Za-z0-9_.:-]",
            ),
            (
                isinstance(token, str) and _TOKEN.fullmatch(token),
                "token must be 1-512 printable chars",
            ),
            (
                isinstance(currency, str) and currency in EXCHANGE_RATES,
                f"currency must be one of {', '.join(EXCHANGE_RATES)}",
            ),
            (
                isinstance(country, str) and _COUNTRY.fullmatch(country),
                "country must be ISO alpha-2",
            ),
            (
                isinstance(brand_id, str) and brand_id in BRAND_IDS,
                f"brand_id must be one of {', '.join(BRAND_IDS)}",
            ),
            (
                isinstance(segments, list | tuple)
                and len(segments) <= _MAX_SEGMENTS
                and all(isinstance(s, str) and _SEGMENT.fullmatch(s) for s in segments),
                f"segments must be a list of at most {_MAX_SEGMENTS} names of [A-Za-z0-9_-]",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise InvalidInput("invalid_player", message)
        player = WalletPlayer(id, token, currency, country, tuple(segments), brand_id)
        with self._lock:
            holder = self._by_token.get(token)
            if holder is not None and holder.id != id:
                raise Rejected("token_in_use", "that token belongs to another player")
            self._register(player)
        return wallet_entry(player)

    def _register(self, player: WalletPlayer) -> None:
        # A replaced player's old token stops working.
        previous = self._by_id.get(player.id)
        if previous is not None:
            self._by_token.pop(previous.token, None)
        self._by_id[player.id] = player
        self._by_token[player.token] = player
