"""The simulated platform's jackpot state and rules, with no web framework in sight: pots that
grow and win, raffles that draw, players who opt in.

Everything is seeded (:mod:`.seed`): the same ``seed`` and the same sequence of calls give the
same instance ids, pot values, winners and draws (timestamps follow the clock). One lock guards
the jackpot state, so the web server may call in from any thread. Methods answer the upstream
JSON shapes (built by :mod:`.wire`) and :class:`~.domain.Event` objects for the live stream.

Conventions (⚙) applied here:

- ``win_amount`` is the pot's value when it won; ``community_winners`` (the other players opted
  in to the instance) share ``community_split`` of it, each in their wallet currency. With no
  one to share with, a service-only ``CommunityPayoutErrorEvent`` reports it.
- A raffle draw picks a ticket holder (weighted by tickets; one ticket per tick for opted-in
  players); with no tickets the draw is ``win_withheld`` with no winners and a service-only
  ``RafflePayoutErrorEvent``.
- A pot's ``instance_count`` counts its seedings: 1 at start, +1 after each win.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from . import wire
from .cors import CorsRules
from .domain import (
    CENT,
    RAFFLE_DRAW_TICKS,
    RAFFLE_PERIOD_MS,
    SELECTABLE_STATUSES,
    Event,
    Instance,
    OptInRecord,
    Pot,
    WalletPlayer,
    allowed_contribution_range,
    bare_brand_id,
    contribution_per_bet,
    convert,
    is_eligible,
    owner_id_of,
    select_instance,
)
from .errors import InvalidInput, NotFound, Rejected
from .seed import DEFAULT_CORS_RULES, build_instances, build_sources, wallet_players
from .wallet import Wallet

_SHARE_PRECISION = Decimal("0.0001")


class World:
    """The seeded, thread-safe state of one simulated ThrillConnect platform.

    :param seed: drives instance ids, starting values, growth, random wins and draws.
    :param win_chance: probability per active jackpot per tick of a random win.
    :param clock: epoch seconds; injectable for tests.

    ``wallet`` holds the players and ``cors`` the CORS origin rules, each on its own lock.
    """

    def __init__(
        self, seed: int = 1, win_chance: float = 0.0, clock: Callable[[], float] = time.time
    ) -> None:
        if not 0.0 <= win_chance <= 1.0:
            raise ValueError("win_chance must be between 0 and 1")
        self._lock = threading.Lock()
        self._clock = clock
        self._win_chance = win_chance
        # Separate streams, so that random wins never shift the growth sequence.
        self._growth_rng = random.Random(f"{seed}:growth")
        self._win_rng = random.Random(f"{seed}:wins")
        self._instances = build_instances(random.Random(seed), self._now_ms())
        self._by_id = {instance.id: instance for instance in self._instances}
        self._sources = build_sources(self._instances)
        self._optins: dict[tuple[str, str], OptInRecord] = {}
        self.wallet = Wallet(wallet_players())
        self.cors = CorsRules(DEFAULT_CORS_RULES)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- read-only views ----------------------------------------------------------------------
    @property
    def instance_ids(self) -> dict[str, str]:
        """Role name → instance id."""
        return {instance.role: instance.id for instance in self._instances}

    def currencies(self) -> dict[str, Any]:
        """``GET /v1/currencies``."""
        return wire.currencies(self._now_ms())

    def sources(self, owner_id: str, name: str | None = None) -> list[dict[str, Any]]:
        """``GET /v1/thrillpots/sources``: the owner's sources, ``name`` a case-insensitive
        substring of the source name (⚙)."""
        needle = (name or "").casefold()
        with self._lock:
            return [
                wire.source(source, owner_id)
                for source in self._sources.values()
                if owner_id in source.owners and needle in source.name.casefold()
            ]

    def jackpot_for_source(
        self,
        source_id: str,
        brand: str,
        *,
        player_id: str | None = None,
        country: str | None = None,
        segments: Sequence[str] = (),
    ) -> dict[str, Any]:
        """``GET /v1/thrillpots/instances/source/{source_id}/brand/{brand}``.

        :raises NotFound: unknown source or brand, or no instance fits.
        """
        bare = bare_brand_id(brand)
        with self._lock:
            source = self._sources.get(source_id)
            if bare is None or source is None or owner_id_of(bare) not in source.owners:
                raise NotFound("source_not_found", f"no source {source_id!r} for brand {brand!r}")
            owner = owner_id_of(bare)
            instance = select_instance(source.jackpots, owner, country, segments)
            if instance is None:
                raise NotFound(
                    "jackpot_not_found", f"no jackpot of source {source_id!r} fits this player"
                )
            optin_status = None
            if player_id:
                known = self.wallet.get(player_id)
                record = self._optins.get((player_id, instance.id))
                if record is None:
                    # A player who never chose: not opted in, nothing contributed.
                    record = OptInRecord(False, instance.contribution_value, last_updated=0)
                optin_status = wire.optin_status(
                    instance, player_id, known.owner_id if known else owner, record
                )
            return wire.jackpot(instance, optin_status)

    def ticker(self, instance_id: str) -> dict[str, Any]:
        """``GET /v1/thrillpots/instances/{instance_id}/ticker``.

        :raises NotFound: unknown instance.
        """
        with self._lock:
            return wire.ticker(self._instance(instance_id))

    def _instance(self, instance_id: str) -> Instance:
        instance = self._by_id.get(instance_id)
        if instance is None:
            raise NotFound("instance_not_found", f"no jackpot instance {instance_id!r}")
        return instance

    # -- player requests ----------------------------------------------------------------------
    def opt_in(
        self,
        player: WalletPlayer,
        *,
        opt_in: bool,
        instance_id: str | None = None,
        source_id: str | None = None,
        contribution_value: Any = None,
    ) -> Event:
        """Opt ``player`` in to (or out of) an instance, or the instance a source picks for
        them; answer the ``OptInEvent`` targeted at the player.

        :raises NotFound: unknown instance or source.
        :raises Rejected: not eligible, or a contribution outside the allowed range.
        """
        chosen = (
            None
            if contribution_value is None
            else _to_decimal(contribution_value, "contribution_value")
        )
        with self._lock:
            now = self._now_ms()
            instance = self._opt_in_target(player, instance_id, source_id)
            key = (player.id, instance.id)
            record = self._optins.get(key)
            if record is None:
                record = OptInRecord(False, instance.contribution_value, last_updated=now)
                self._optins[key] = record
            if opt_in:
                preferred = instance.contribution_value if chosen is None else chosen
                low, high = allowed_contribution_range(
                    instance.contribution_kind, instance.contribution_value
                )
                if not low <= preferred <= high:
                    raise Rejected(
                        "contribution_out_of_range",
                        f"contribution_value must be between {low} and {high}",
                    )
                record.preferred_value = preferred
            record.opted_in = opt_in
            record.last_updated = now
            data = wire.opt_in_event(instance, player, record)
            return Event("thrillpots", "OptInEvent", player.brand_id, player.id, data, now)

    def _opt_in_target(
        self, player: WalletPlayer, instance_id: str | None, source_id: str | None
    ) -> Instance:
        if source_id is not None:
            source = self._sources.get(source_id)
            if source is None:
                raise NotFound("source_not_found", f"no source {source_id!r}")
            instance = select_instance(
                source.jackpots, player.owner_id, player.country, player.segments
            )
            if instance is None:
                raise Rejected(
                    "not_eligible", f"no jackpot of source {source_id!r} for this player"
                )
            return instance
        instance = self._instance(instance_id or "")
        if not is_eligible(instance, player.owner_id, player.country, player.segments):
            raise Rejected("not_eligible", "the player may not play this jackpot")
        if instance.status not in SELECTABLE_STATUSES:
            raise Rejected("not_eligible", f"the jackpot is {instance.status}")
        return instance

    def raffle_tickets(self, player: WalletPlayer, instance_id: str) -> dict[str, Any]:
        """The ``PlayerRaffleTicketResponse`` data for ``player`` on a raffle.

        :raises NotFound: unknown instance.
        :raises Rejected: not a raffle, or not eligible.
        """
        with self._lock:
            instance = self._instance(instance_id)
            if instance.jackpot_type != "Raffle":
                raise Rejected("not_a_raffle", "that jackpot is not a raffle")
            if not is_eligible(instance, player.owner_id, player.country, player.segments):
                raise Rejected("not_eligible", "the player may not play this raffle")
            record = self._optins.get((player.id, instance.id))
            return wire.raffle_tickets(instance, player, record.tickets if record else 0)

    # -- time passing -------------------------------------------------------------------------
    def tick(self) -> list[Event]:
        """One tick: pots grow, opted-in players contribute, one ``JackpotUpdate`` per active
        instance and allowed brand, random wins, and raffle draws when a period ends."""
        events: list[Event] = []
        with self._lock:
            now = self._now_ms()
            active = [instance for instance in self._instances if instance.status == "Active"]
            for instance in active:
                self._grow(instance, now)
                events += _for_brands(instance, "JackpotUpdate", wire.jackpot_update(instance), now)
            for instance in active:
                if instance.jackpot_type == "Raffle":
                    instance.ticks_in_period += 1
                    if instance.ticks_in_period >= RAFFLE_DRAW_TICKS:
                        events += self._raffle_draw(instance, now, None)[1]
                elif self._win_chance and self._win_rng.random() < self._win_chance:
                    pot = self._win_rng.choice(instance.pots)
                    winner = self._pick_winner(instance)
                    if winner is not None:
                        events += self._jackpot_win(instance, pot, winner, now)[1]
        return events

    def _grow(self, instance: Instance, now: int) -> None:
        for pot in instance.pots:
            if pot.is_progressive:
                step = pot.seed_value / 100 * self._growth_rng.randint(10, 100) / 100
                pot.current_value += max(step.quantize(CENT), CENT)
        amount_kind = instance.contribution_kind
        for (_, instance_id), record in self._optins.items():
            if instance_id != instance.id or not record.opted_in:
                continue
            amount = contribution_per_bet(amount_kind, record.preferred_value)
            record.contribution_count += 1
            record.contribution_value += amount
            share = (amount / len(instance.pots)).quantize(_SHARE_PRECISION)
            for pot in instance.pots:
                count, value = record.pot_contributions.get(pot.id, (0, Decimal(0)))
                record.pot_contributions[pot.id] = (count + 1, value + share)
            if instance.jackpot_type == "Raffle":
                record.tickets += 1
        instance.last_updated = now

    def _records_of(self, instance: Instance) -> list[tuple[WalletPlayer, OptInRecord]]:
        # Sorted by player id, so that random picks repeat with the seed.
        pairs = []
        for (player_id, instance_id), record in sorted(self._optins.items()):
            if instance_id != instance.id:
                continue
            player = self.wallet.get(player_id)
            if player is not None:
                pairs.append((player, record))
        return pairs

    def _opted_in_players(self, instance: Instance) -> list[WalletPlayer]:
        return [player for player, record in self._records_of(instance) if record.opted_in]

    def _pick_winner(self, instance: Instance) -> WalletPlayer | None:
        candidates = self._opted_in_players(instance) or [
            player
            for player in self.wallet.players()
            if is_eligible(instance, player.owner_id, player.country, player.segments)
        ]
        return self._win_rng.choice(candidates) if candidates else None

    def win(
        self, instance_id: str, pot_id: str | None = None, player_id: str | None = None
    ) -> tuple[dict[str, Any], list[Event]]:
        """Make a pot win now (a raffle draws instead); answer the event data and the events.

        :raises NotFound: unknown instance, pot or player.
        :raises Rejected: the instance is not active, or nobody may win it.
        """
        with self._lock:
            now = self._now_ms()
            instance = self._instance(instance_id)
            pot = instance.pots[0] if pot_id is None else instance.pot(pot_id)
            if pot is None:
                raise NotFound("pot_not_found", f"no pot {pot_id!r} in that jackpot")
            winner = None
            if player_id is not None:
                winner = self.wallet.get(player_id)
                if winner is None:
                    raise NotFound("player_not_found", f"no wallet player {player_id!r}")
            if instance.status != "Active":
                raise Rejected("instance_not_active", f"the jackpot is {instance.status}")
            if instance.jackpot_type == "Raffle":
                return self._raffle_draw(instance, now, winner)
            winner = winner or self._pick_winner(instance)
            if winner is None:
                raise Rejected("no_eligible_player", "no wallet player may win this jackpot")
            return self._jackpot_win(instance, pot, winner, now)

    def _jackpot_win(
        self, instance: Instance, pot: Pot, winner: WalletPlayer, now: int
    ) -> tuple[dict[str, Any], list[Event]]:
        community_pool = (pot.current_value * pot.community_split).quantize(CENT)
        members = [p for p in self._opted_in_players(instance) if p.id != winner.id]
        community_winners = []
        if community_pool and members:
            share = (community_pool / len(members)).quantize(CENT)
            community_winners = [
                wire.winner(member, convert(share, instance.currency, member.currency))
                for member in members
            ]
        # Built before the pot reseeds: the event tells the value it won at.
        data = wire.win_event(instance, pot, winner, community_winners, now)
        events = _for_brands(instance, "WinEvent", data, now)
        if community_pool and not members:
            # Nobody to share the community part with: the platform reports it to the operator.
            error = wire.community_payout_error(instance, pot, winner.owner_id, community_pool, now)
            events.append(_service_event("CommunityPayoutErrorEvent", winner.owner_id, error, now))
        pot.current_value = pot.seed_value
        pot.instance_count += 1
        instance.last_updated = now
        return data, events

    def _raffle_draw(
        self, instance: Instance, now: int, winner: WalletPlayer | None
    ) -> tuple[dict[str, Any], list[Event]]:
        holders = [
            (player, record.tickets)
            for player, record in self._records_of(instance)
            if record.tickets > 0
        ]
        if winner is None and holders:
            ticket = self._win_rng.randrange(sum(tickets for _, tickets in holders))
            for holder, tickets in holders:
                if ticket < tickets:
                    winner = holder
                    break
                ticket -= tickets
        prize = instance.pots[0].current_value
        owner = winner.owner_id if winner else instance.allowed_brands[0]
        winners = []
        if winner is not None:
            winners.append(wire.winner(winner, convert(prize, instance.currency, winner.currency)))
        data = wire.raffle_win(instance, owner, winners, now)
        events = _for_brands(instance, "RaffleWinEvent", data, now)
        if not winners:
            error = wire.raffle_payout_error(instance, owner, now)
            events.append(_service_event("RafflePayoutErrorEvent", owner, error, now))
        # A new period starts; tickets belong to the period that just drew.
        for (_, instance_id), record in self._optins.items():
            if instance_id == instance.id:
                record.tickets = 0
        instance.ticks_in_period = 0
        instance.timestamp_start = now
        instance.timestamp_end = now + RAFFLE_PERIOD_MS
        instance.last_updated = now
        return data, events


def _for_brands(instance: Instance, msg_name: str, data: dict[str, Any], now: int) -> list[Event]:
    # A broadcast goes out once per brand the instance allows, with that brand on it.
    return [
        Event("thrillpots", msg_name, owner.rpartition(":")[2], None, data, now)
        for owner in instance.allowed_brands
    ]


def _service_event(msg_name: str, owner: str, data: dict[str, Any], now: int) -> Event:
    # A payout error concerns the operator only: service connections of ``owner``'s brand.
    return Event("thrillpots", msg_name, owner.rpartition(":")[2], None, data, now, True)


def _to_decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput("invalid_request", f"{what} must be a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation as e:
        raise InvalidInput("invalid_request", f"{what} must be a number") from e
    if not number.is_finite():
        raise InvalidInput("invalid_request", f"{what} must be a finite number")
    return number
