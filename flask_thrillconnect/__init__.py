"""Live ThrillConnect jackpots for Flask portals."""

__version__ = "0.1.0.dev0"
