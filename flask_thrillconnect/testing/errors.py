"""The simulator's refusals, and the text check most of them come from.

Each refusal carries the snake_case ``code`` it puts on the wire and the HTTP ``status`` a REST
route answers it with, so the world, the WebSocket handlers and the REST routes raise the same
errors and one error handler (in :mod:`.app`) turns them into HTTP answers. No web framework
here: the world raises these too.
"""

from __future__ import annotations

import re
from typing import Any

#: Longest identifier or name a client may send in a body, a query or a WebSocket request.
FIELD_LIMIT = 128


class SimError(Exception):
    """A request the simulated platform refuses; ``code`` is the snake_case error code."""

    #: What a REST route answers with; a WebSocket request gets an ``Error`` envelope instead.
    status = 409

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(SimError):
    """No such instance, pot, source or player."""

    status = 404


class Rejected(SimError):
    """The request is well formed but not allowed (eligibility, range, state)."""

    status = 409


class InvalidInput(SimError):
    """The request is malformed."""

    status = 400


class ApiError(SimError):
    """A refusal of the HTTP layer with its own ``status`` (credentials, injected faults)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status


def error_code(phrase: str) -> str:
    """The snake_case error code of an HTTP phrase (``"Not Found"`` → ``not_found``)."""
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def text_field(body: dict[str, Any], key: str, *, code: str) -> str:
    """``body[key]``, which must be a string of 1 to :data:`FIELD_LIMIT` characters.

    :param code: the error code of a refusal (the platform's REST routes and WebSocket
        requests name it differently).
    :raises InvalidInput: the value is absent or not such a string.
    """
    value = body.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= FIELD_LIMIT:
        raise InvalidInput(code, f"{key} must be a string of 1 to {FIELD_LIMIT} chars")
    return value


def optional_text_field(body: dict[str, Any], key: str, *, code: str) -> str | None:
    """Like :func:`text_field`, but an absent or ``null`` value is ``None``."""
    return None if body.get(key) is None else text_field(body, key, code=code)
