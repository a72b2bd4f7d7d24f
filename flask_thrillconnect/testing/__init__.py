"""A faithful local ThrillConnect: the simulator, its server and the pytest fixture.

``Simulator`` is imported lazily, so that loading the pytest plugin (which imports this
package) costs nothing until a test asks for the ``thrillconnect_sim`` fixture.

The modules, each importing only those listed above it:

- :mod:`.errors`: refusals with their wire code and HTTP status.
- :mod:`.domain`: the platform's fixed facts, its objects and the ⚙ conventions.
- :mod:`.seed`: the instances, sources, players and CORS rules a simulator starts with.
- :mod:`.cors`, :mod:`.wallet`: the CORS origin rules and the wallet players.
- :mod:`.wire`: every upstream JSON shape the simulator answers with.
- :mod:`.world`: the jackpot state and rules (growth, wins, raffles, opt-ins).
- :mod:`.faults`: injected faults; :mod:`.tokens`: service JWTs.
- :mod:`.connections`: open WebSockets, their locked writes and the fan-out.
- :mod:`.runtime`: one simulator's state (world, broadcaster, faults, counters).
- :mod:`.handlers`: client WebSocket requests.
- :mod:`.app`: the Flask application and its routes.
- :mod:`.simulator`: :class:`Simulator`, the public handle.
- :mod:`.plugin` (the pytest fixture) and :mod:`.__main__` (the CLI) import it lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .simulator import Simulator, SimulatorControlError

__all__ = ["MISSING_EXTRA", "Simulator", "SimulatorControlError", "missing_testing_extra"]

#: What to do when the simulator's own dependencies are not installed.
MISSING_EXTRA = (
    "the ThrillConnect simulator needs the 'testing' extra (PyJWT, for its service tokens): "
    "pip install 'flask-thrillconnect[testing]'"
)


def missing_testing_extra() -> str | None:
    """:data:`MISSING_EXTRA` when the ``testing`` extra is not installed, else ``None``."""
    try:
        import jwt  # noqa: F401
    except ImportError:
        return MISSING_EXTRA
    return None


def __getattr__(name: str) -> Any:
    if name in ("Simulator", "SimulatorControlError"):
        problem = missing_testing_extra()
        if problem is not None:
            raise ImportError(problem)
        from . import simulator

        return getattr(simulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
