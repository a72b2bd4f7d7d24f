"""Service JWTs of the simulated identity service (HS256, signed with PyJWT).

⚙ Claims: ``sub``, ``org_id`` (operator), ``unit_ids`` (bare brand ids), ``iat`` and ``exp``.
This is the only module that imports PyJWT, so the pytest plugin stays light to load.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

#: Secret the simulator signs with unless told otherwise (it is a test double, not a secret).
DEFAULT_SECRET = "thrillconnect-simulator-signing-secret"

_ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ("sub", "org_id", "exp")


class InvalidServiceToken(Exception):
    """The token is missing, malformed, wrongly signed or expired (never holds the token)."""


@dataclass(frozen=True)
class ServiceClaims:
    """What a valid service token says about its holder."""

    subject: str
    org_id: str
    unit_ids: tuple[str, ...]


def _signing_key(secret: str) -> bytes:
    # Hash the secret so that any secret, however short, makes a full-length HS256 key:
    # PyJWT warns about short HMAC keys and the test suite turns warnings into errors.
    return hashlib.sha256(secret.encode()).digest()


def issue_service_token(
    secret: str,
    *,
    org_id: str,
    unit_ids: Sequence[str],
    expires_in: float,
    subject: str = "thrillconnect-simulator",
    now: float | None = None,
) -> str:
    """Sign a service JWT.

    :param secret: signing secret; a token signed with another secret is refused.
    :param org_id: the operator the token belongs to.
    :param unit_ids: the bare brand ids the token covers.
    :param expires_in: seconds of validity from ``now``; negative gives an expired token.
    :param subject: the ``sub`` claim.
    :param now: issue time (epoch seconds), default the current time.
    """
    issued_at = time.time() if now is None else now
    claims = {
        "sub": subject,
        "org_id": org_id,
        "unit_ids": list(unit_ids),
        "iat": int(issued_at),
        "exp": int(issued_at + expires_in),
    }
    return jwt.encode(claims, _signing_key(secret), algorithm=_ALGORITHM)


def verify_service_token(secret: str, token: str | None) -> ServiceClaims:
    """Check a service JWT and return its claims.

    :raises InvalidServiceToken: when the token is absent, malformed, badly signed or expired.
    """
    if not token:
        raise InvalidServiceToken("no service token")
    try:
        claims = jwt.decode(
            token,
            _signing_key(secret),
            algorithms=[_ALGORITHM],
            options={"require": list(_REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError as e:
        raise InvalidServiceToken("service token expired") from e
    except jwt.InvalidTokenError as e:
        raise InvalidServiceToken("service token invalid") from e
    org_id = claims.get("org_id")
    unit_ids = claims.get("unit_ids", [])
    if not isinstance(org_id, str) or not isinstance(unit_ids, list):
        raise InvalidServiceToken("service token claims malformed")
    return ServiceClaims(
        subject=str(claims["sub"]),
        org_id=org_id,
        unit_ids=tuple(str(unit) for unit in unit_ids),
    )
