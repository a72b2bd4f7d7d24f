"""One running simulator's state: the world plus what the web side needs around it (the
broadcaster, the faults, the request counters, the signing secret).

The app's routes and the WebSocket handlers reach everything through a :class:`Platform`;
nothing here knows Flask.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .connections import SimBroadcaster
from .domain import Event, WalletPlayer
from .faults import Faults
from .world import World

#: The REST routes ``/_sim/stats`` counts, by endpoint name.
REST_COUNTERS = ("currencies", "sources", "jackpot", "ticker", "cors", "health")

_Result = TypeVar("_Result")


class RequestCounter:
    """REST requests that reached a route since start, by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(REST_COUNTERS, 0)

    def count(self, kind: str) -> None:
        """Count one request of ``kind``."""
        with self._lock:
            self._counts[kind] += 1

    def snapshot(self) -> dict[str, int]:
        """The counts so far."""
        with self._lock:
            return dict(self._counts)


class Platform:
    """The world, the broadcaster, the faults and the counters of one simulator.

    Every change of the world and the publication of its events happen under one lock, so
    connections see events in the order the world produced them.
    """

    def __init__(self, seed: int, win_chance: float, secret: str) -> None:
        self.world = World(seed=seed, win_chance=win_chance)
        self.broadcaster = SimBroadcaster()
        self.faults = Faults()
        self.requests = RequestCounter()
        self.secret = secret
        self._publish_lock = threading.Lock()

    def _apply(self, change: Callable[[], tuple[_Result, list[Event]]]) -> _Result:
        with self._publish_lock:
            result, events = change()
            self.broadcaster.publish(events)
        return result

    def tick(self, count: int = 1) -> None:
        """``count`` ticks of the world, each published as it happens."""
        for _ in range(count):
            self._apply(lambda: (None, self.world.tick()))

    def win(self, instance_id: str, pot_id: str | None, player_id: str | None) -> dict[str, Any]:
        """A win (or raffle draw) now; answer the event's data."""
        return self._apply(lambda: self.world.win(instance_id, pot_id, player_id))

    def opt_in(self, player: WalletPlayer, **choice: Any) -> None:
        """An opt-in request of ``player``; its ``OptInEvent`` is routed like any event."""
        self._apply(lambda: (None, [self.world.opt_in(player, **choice)]))

    def stats(self) -> dict[str, Any]:
        """The ``/_sim/stats`` answer."""
        open_now, accepted = self.broadcaster.counts()
        return {"requests": self.requests.snapshot(), "connections": open_now, "connects": accepted}
