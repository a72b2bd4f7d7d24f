"""Transitional: the body schemas moved to :mod:`flask_thrillconnect.models.bodies`.

This module only re-exports what modules not yet switched still import; import from
:mod:`flask_thrillconnect.models` and :mod:`flask_thrillconnect.limits` instead. It goes
away once nothing imports it.
"""

from __future__ import annotations

from .limits import MAX_REQUEST_BODY_BYTES
from .models import CorsRemoveBody, CorsUpsertBody, OptInBody

__all__ = ["MAX_REQUEST_BODY_BYTES", "CorsRemoveBody", "CorsUpsertBody", "OptInBody"]
