"""Transitional: the jackpot service moved to :mod:`flask_thrillconnect.jackpots`."""

from .jackpots import Answer, JackpotService, encode_json

__all__ = ["Answer", "JackpotService", "encode_json"]
