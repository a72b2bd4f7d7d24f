"""Live ThrillConnect jackpots for Flask portals.

``ThrillConnect`` is the extension; ``Player`` is what its ``player_loader``
returns. The simulator lives in :mod:`flask_thrillconnect.testing`.
"""

# Before the imports: modules below read it (the client's User-Agent, OpenAPI).
__version__ = "0.1.0.dev0"

from .extension import ThrillConnect
from .player import Player
from .state import shutdown

__all__ = ["Player", "ThrillConnect", "__version__", "shutdown"]
