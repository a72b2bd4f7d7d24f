"""``python -m flask_thrillconnect.testing``: run the simulator until SIGINT or SIGTERM.

Prints the REST base URL and a service token valid for 24 hours (one line each, flushed), so
that scripts and demos can read them; exits 0 after a clean stop.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

#: How often the main thread looks up while waiting for a signal.
_WAIT_SLICE_SECONDS = 0.5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flask_thrillconnect.testing",
        description="Run a local ThrillConnect simulator.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8600, help="port, 0 for a free one")
    parser.add_argument(
        "--tick", type=float, default=3.0, help="seconds between ticks, 0 for none (default 3)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the world (default 1)")
    parser.add_argument(
        "--win-chance",
        type=float,
        default=0.01,
        help="chance per active jackpot per tick of a random win (default 0.01)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator; answer the exit status."""
    args = _parser().parse_args(argv)
    if args.tick < 0 or not 0.0 <= args.win_chance <= 1.0:
        print("--tick must be >= 0 and --win-chance between 0 and 1", file=sys.stderr)
        return 2

    from flask_thrillconnect.testing import missing_testing_extra

    problem = missing_testing_extra()
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    from flask_thrillconnect.testing.simulator import Simulator

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    simulator = Simulator(
        host=args.host,
        port=args.port,
        tick_interval=args.tick,
        seed=args.seed,
        win_chance=args.win_chance,
    ).start()
    try:
        print(f"ThrillConnect simulator: {simulator.url}", flush=True)
        print(f"Service token (24 h): {simulator.service_token}", flush=True)
        # Waiting in slices keeps the main thread responsive to signals.
        while not stop.wait(_WAIT_SLICE_SECONDS):
            pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
