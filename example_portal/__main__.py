"""``python -m example_portal [--host 127.0.0.1] [--port 5000]``: run the example portal.

With ``THRILLCONNECT_URL`` unset, an embedded simulator (ticking every 3 seconds, with the odd
random win) starts on a free loopback port and the portal points at it. With it set, the portal
talks to that platform, configured by ``THRILLCONNECT_URL``, ``THRILLCONNECT_OPERATOR_ID``,
``THRILLCONNECT_BRAND_ID`` and ``THRILLCONNECT_SERVICE_TOKEN``. ``SECRET_KEY`` is read from the
environment too (a random one otherwise: sessions then end with the process).

Served by Werkzeug, threaded: each relay WebSocket holds a thread for as long as it is open.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server

from . import create_app

#: Seconds between the embedded simulator's ticks.
DEMO_TICK_SECONDS = 3.0
#: Chance per active jackpot per tick of a random win: about one win a minute or two.
DEMO_WIN_CHANCE = 0.005
_REAL_KEYS = (
    "THRILLCONNECT_URL",
    "THRILLCONNECT_OPERATOR_ID",
    "THRILLCONNECT_BRAND_ID",
    "THRILLCONNECT_SERVICE_TOKEN",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m example_portal", description="Run the ThrillConnect example portal."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000, 0: free)")
    return parser


@contextmanager
def _platform(environ: dict[str, str]) -> Iterator[dict[str, Any]]:
    """The ThrillConnect settings: from the environment, or an embedded simulator's."""
    if environ.get("THRILLCONNECT_URL"):
        yield {key: environ[key] for key in _REAL_KEYS if environ.get(key)}
        return
    from flask_thrillconnect.testing import Simulator

    with Simulator(tick_interval=DEMO_TICK_SECONDS, win_chance=DEMO_WIN_CHANCE) as simulator:
        print(f"Embedded ThrillConnect simulator: {simulator.url}", flush=True)
        yield {
            "THRILLCONNECT_URL": simulator.url,
            "THRILLCONNECT_OPERATOR_ID": simulator.operator_id,
            "THRILLCONNECT_BRAND_ID": "brand1",
            "THRILLCONNECT_SERVICE_TOKEN": simulator.service_token,
            "PORTAL_SIMULATOR": simulator,
        }


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    """Serve the portal until interrupted; answer the exit status."""
    args = _parser().parse_args(argv)
    environ = dict(os.environ if environ is None else environ)
    with _platform(environ) as settings:
        app = create_app(
            {"SECRET_KEY": environ.get("SECRET_KEY") or secrets.token_hex(32), **settings}
        )
        server = make_server(args.host, args.port, app, threaded=True)
        print(f"Example portal: http://{args.host}:{server.server_port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            app.extensions["thrillconnect"].close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
