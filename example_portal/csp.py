"""A strict Content-Security-Policy with a fresh nonce per request.

Only scripts carrying the nonce run, styles come from the portal's own origin (or carry the
nonce), and the page may only talk to its own origin (HTTP and the relay WebSocket alike).
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, g

#: ``connect-src 'self'`` also allows ``ws:``/``wss:`` to the page's own host and port (CSP 3).
_POLICY = (
    "default-src 'self'; "
    "script-src 'nonce-{nonce}'; "
    "style-src 'self' 'nonce-{nonce}'; "
    "connect-src 'self'; "
    "img-src 'self'; "
    "object-src 'none'; "
    "base-uri 'none'; "
    "form-action 'self'; "
    "frame-ancestors 'none'"
)


def csp_nonce() -> str:
    """The current request's nonce (made on first use, so every tag of a page shares it)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(18)
    return g.csp_nonce


def _add_security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = _POLICY.format(nonce=csp_nonce())
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def init_csp(app: Flask) -> None:
    """Send the policy on every response and give templates ``csp_nonce()``."""
    app.after_request(_add_security_headers)
    app.jinja_env.globals["csp_nonce"] = csp_nonce
