"""The example portal for a WSGI server with several workers, configured from the environment::

    SECRET_KEY=... THRILLCONNECT_URL=https://thrillconnect.example \\
    THRILLCONNECT_OPERATOR_ID=thrilltech THRILLCONNECT_BRAND_ID=brand1 \\
    THRILLCONNECT_SERVICE_TOKEN=... \\
    gunicorn --worker-class gthread --workers 2 --threads 100 example_portal.wsgi:app

Against a real ThrillConnect only (an embedded simulator would be one per worker: use
``python -m example_portal`` for the demo). ``SECRET_KEY`` is required: every worker must sign
sessions with the same key. Logins live in ``PORTAL_LOGINS_DB`` (a SQLite file, by default in
the instance folder) or, with ``THRILLCONNECT_REDIS_URL``, in Redis; so does every worker know
them. ``PORTAL_HTTPS=1`` behind TLS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from . import create_app

_KEYS = (
    "SECRET_KEY",
    "THRILLCONNECT_URL",
    "THRILLCONNECT_OPERATOR_ID",
    "THRILLCONNECT_BRAND_ID",
    "THRILLCONNECT_SERVICE_TOKEN",
    "THRILLCONNECT_REDIS_URL",
    "PORTAL_LOGINS_DB",
)


def settings_from(environ: Mapping[str, str]) -> dict[str, Any]:
    """The portal's settings from the environment variables of the same names."""
    if not environ.get("SECRET_KEY"):
        raise RuntimeError("SECRET_KEY is required: every worker must sign sessions alike")
    settings: dict[str, Any] = {key: environ[key] for key in _KEYS if environ.get(key)}
    settings["PORTAL_HTTPS"] = environ.get("PORTAL_HTTPS", "") in {"1", "true", "yes"}
    return settings


app = create_app(settings_from(os.environ))
