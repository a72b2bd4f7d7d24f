"""The relay hub's publish cost per delivery, as a ratio to a plain ``list.append`` loop.

For 1,000 and 5,000 subscribed browser connections, publishes ticks of 10 ``JackpotUpdate``
events (one per instance) and bursts of ``WinEvent`` s, and divides the time spent in
:meth:`RelayHub.publish` by the number of deliveries. The baseline, measured in the same run,
is a loop appending the same text to a list once per delivery: the least a Python fan-out
can cost. Outboxes are emptied between rounds, outside the timed part, so every tick starts
as in production: idle senders, whose wake events the first update of a tick sets.

Pure CPU, no sockets. Run: ``.venv/bin/python -m bench.hub_fanout``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from flask_thrillconnect.relay import BROADCAST, Connection, RelayHub

CONNECTION_COUNTS = (1_000, 5_000)
INSTANCES = 10
ROUNDS = 7


def jackpot_update(instance: int, value: float) -> dict[str, Any]:
    return {
        "msg_type": "Event",
        "source": "thrillpots",
        "msg_name": "JackpotUpdate",
        "operator_id": "thrilltech",
        "brand_id": "brand1",
        "player_id": None,
        "data": {
            "id": f"9d6c0000-0000-4000-8000-{instance:012d}",
            "jackpot_type": "Jackpot",
            "currency": "EUR",
            "pots": [{"id": "minor", "is_progressive": True, "current_value": value}],
            "status": "Active",
        },
        "timestamp": 1715355347345,
    }


def win(number: int) -> dict[str, Any]:
    return {
        "msg_type": "Event",
        "source": "thrillpots",
        "msg_name": "WinEvent",
        "player_id": None,
        "data": {"instance_id": "9d6c", "win_amount": number},
        "timestamp": 1715355347345,
    }


def timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def baseline_per_item(connection_count: int, messages: int) -> float:
    """Seconds per ``list.append`` in a loop shaped like the fan-out."""
    recipients = tuple(range(connection_count))
    text = "x" * 300

    def append_all() -> None:
        out: list[str] = []
        append = out.append
        for _ in range(messages):
            for _recipient in recipients:
                append(text)

    return min(timed(append_all) for _ in range(ROUNDS)) / (connection_count * messages)


def publish_per_delivery(
    connection_count: int, envelopes: Callable[[int], list[dict[str, Any]]]
) -> float:
    """Median seconds per delivery of publishing ``envelopes(round)`` to idle connections."""
    hub = RelayHub(outbox_limit=10_000)
    connections: list[Connection] = []
    for _ in range(connection_count):
        conn = hub.connect([BROADCAST])
        conn.subscribe([("thrillpots", "*")])
        connections.append(conn)
    samples = []
    for round_number in range(ROUNDS):
        batch = envelopes(round_number)
        for conn in connections:
            conn.drain(max_items=100_000)

        def publish_batch(batch: list[dict[str, Any]] = batch) -> None:
            for envelope in batch:
                hub.publish(envelope, BROADCAST)

        samples.append(timed(publish_batch) / (connection_count * len(batch)))
    hub.close()
    return statistics.median(samples)


def main() -> None:
    print(
        f"{'connections':>11} {'scenario':<26} {'per delivery':>13} {'baseline':>10} {'ratio':>6}"
    )
    for count in CONNECTION_COUNTS:
        scenarios = {
            f"tick of {INSTANCES} JackpotUpdates": (
                lambda r: [jackpot_update(i, float(r)) for i in range(INSTANCES)]
            ),
            "burst of 10 WinEvents": lambda r: [win(r * 10 + n) for n in range(10)],
        }
        for name, envelopes in scenarios.items():
            baseline = baseline_per_item(count, 10)
            cost = publish_per_delivery(count, envelopes)
            print(
                f"{count:>11} {name:<26} {cost * 1e9:>10.0f} ns {baseline * 1e9:>7.0f} ns"
                f" {cost / baseline:>6.1f}"
            )


if __name__ == "__main__":
    main()
