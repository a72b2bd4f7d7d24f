"""Security headers with Flask-Talisman: a strict Content-Security-Policy with a fresh nonce per
request, and HTTPS settings that follow ``PORTAL_HTTPS``.

Only scripts carrying the nonce run (``'strict-dynamic'``: not even the portal's own files
without it), styles come from the portal's own origin or carry the nonce, and the page talks
only to its own origin: ``connect-src 'self'`` covers the relay's WebSocket (``ws:``/``wss:`` to
the page's own host, CSP level 3). Templates put ``nonce="{{ csp_nonce() }}"`` on their tags and
pass Talisman's ``csp_nonce`` to ``thrillconnect.assets(nonce=csp_nonce)``.
"""

from __future__ import annotations

from flask import Flask
from flask_talisman import Talisman

#: Talisman appends ``'nonce-…'`` to the directives in :data:`NONCE_IN`.
POLICY = {
    "default-src": "'self'",
    "script-src": "'strict-dynamic'",
    "style-src": "'self'",
    "connect-src": "'self'",
    "img-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
NONCE_IN = ["script-src", "style-src"]


def init_csp(app: Flask) -> Talisman:
    """Send the policy and the other security headers on every response; give templates
    ``csp_nonce()``.

    Call it before ``CSRFProtect``: Talisman makes the nonce in a ``before_request``, which must
    run before Flask-WTF's check can refuse a request with a page that needs it.

    ``PORTAL_HTTPS`` (default ``False``, the demo on http://127.0.0.1): when ``True`` (behind
    TLS), HTTP is redirected to HTTPS, HSTS is sent and the session cookie is ``Secure``.
    """
    https = bool(app.config.get("PORTAL_HTTPS"))
    return Talisman(
        app,
        force_https=https,
        strict_transport_security=https,
        session_cookie_secure=https,
        frame_options="DENY",
        referrer_policy="same-origin",
        content_security_policy=POLICY,
        content_security_policy_nonce_in=NONCE_IN,
    )
