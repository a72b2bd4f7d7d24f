"""Every wire and validation limit of the package, in one table.

Validators, schemas, sockets and ``/openapi.json`` read their bounds from here, so a limit is
changed in one place and stated the same way everywhere. Where THRILLCONNECT_API.md is silent
about a bound and two places of the code disagreed, the stricter one is kept.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "FIXED_CONTRIBUTION_MAX_FACTOR",
    "MAX_BROWSER_MESSAGE_BYTES",
    "MAX_CONTRIBUTION",
    "MAX_CORS_PATTERN_LENGTH",
    "MAX_CORS_RULES",
    "MAX_ERROR_BODY_BYTES",
    "MAX_IDENTIFIER_LENGTH",
    "MAX_NAME_FILTER_LENGTH",
    "MAX_RELAY_ID_LENGTH",
    "MAX_REQUEST_BODY_BYTES",
    "MAX_RESPONSE_BYTES",
    "MAX_SEGMENTS",
    "MAX_SEQ",
    "MAX_SUBSCRIPTIONS",
    "MAX_TOKEN_LENGTH",
    "MAX_UPSTREAM_MESSAGE_BYTES",
    "PERCENTAGE_CONTRIBUTION_RANGE",
]

# -- values a caller or a browser sends ------------------------------------------------------

#: Characters of an id that goes into an upstream URL or message (source, instance, player…).
MAX_IDENTIFIER_LENGTH = 128
#: Characters of the free-text source name filter of the sources listing.
MAX_NAME_FILTER_LENGTH = 128
#: Distinct player segments sent with one jackpot request.
MAX_SEGMENTS = 32
#: Characters of an opaque credential (wallet or service token) placed in a URL.
MAX_TOKEN_LENGTH = 4096
#: Event subscriptions in one ``SubscribeRequest`` from a browser.
MAX_SUBSCRIPTIONS = 32
#: Characters of the relay id a browser resumes with (``?relay_id=``).
MAX_RELAY_ID_LENGTH = 64
#: The largest ``seq`` (and ``?since=``): JavaScript's largest safe integer, so that a page
#: holds every ``seq`` exactly.
MAX_SEQ = 2**53 - 1

# -- money -----------------------------------------------------------------------------------

#: The largest contribution a player may ask for: far above any real jackpot's range, it only
#: keeps absurd numbers out of upstream messages (upstream narrows it per jackpot).
MAX_CONTRIBUTION = Decimal(1_000_000)
#: ⚙ A ``Fixed v`` jackpot takes contributions from ``v`` to this many times ``v``.
FIXED_CONTRIBUTION_MAX_FACTOR = 10
#: ⚙ The contributions a ``Percentage`` jackpot takes, inclusive.
PERCENTAGE_CONTRIBUTION_RANGE = (Decimal("0.01"), Decimal("0.10"))

# -- CORS origin rules -----------------------------------------------------------------------

#: Rules in one ``PUT`` or ``DELETE /v1/cors`` body (was 1,000 in the client, 100 in the proxy).
MAX_CORS_RULES = 100
#: Characters of one rule's pattern (was 512 in the client, 256 in the proxy).
MAX_CORS_PATTERN_LENGTH = 256

# -- message sizes ---------------------------------------------------------------------------

#: A browser's JSON body to the blueprint; 100 CORS rules fit with room to spare.
MAX_REQUEST_BODY_BYTES = 64 * 1024
#: One WebSocket message from a browser to the relay (was 16 KiB in the parser, 4 KiB at the
#: socket).
MAX_BROWSER_MESSAGE_BYTES = 4096
#: One upstream WebSocket message; ThrillConnect's events are small (was 4 MiB in the parser,
#: 1 MiB at the socket).
MAX_UPSTREAM_MESSAGE_BYTES = 1024 * 1024
#: One upstream REST answer; they are a few kilobytes.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
#: The part of an upstream error body read for its ``error`` code and ``message``.
MAX_ERROR_BODY_BYTES = 64 * 1024
