"""A faithful local ThrillConnect: the simulator, its server and the pytest fixture.

``Simulator`` is imported lazily, so that loading the pytest plugin (which imports this
package) costs nothing until a test asks for the ``thrillconnect_sim`` fixture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import Simulator, SimulatorControlError

__all__ = ["Simulator", "SimulatorControlError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
