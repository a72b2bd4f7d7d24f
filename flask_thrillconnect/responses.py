"""Turning cache answers and errors into HTTP responses."""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Any

from flask import Response, request
from werkzeug.exceptions import HTTPException

from .errors import InvalidRequest, RateLimited, ThrillConnectError
from .jackpots import Answer
from .models import to_json
from .state import current_state

logger = logging.getLogger("flask_thrillconnect.responses")

JSON = "application/json"


def cached_json(answer: Answer, *, vary_cookie: bool = False) -> Response:
    """The cached body with ``X-Cache``, ``ETag`` and ``Cache-Control``; 304 when it matches."""
    entry, status = answer.result.entry, answer.result.status
    etag = entry.etag.strip('"')
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        response = Response(entry.value, mimetype=JSON)
    response.set_etag(etag)
    response.headers["X-Cache"] = status
    if not answer.shared:
        response.headers["Cache-Control"] = "private, no-store"
    else:
        fresh_for = 0 if status != "HIT" and status != "MISS" else entry.fresh_until - time.time()
        response.headers["Cache-Control"] = f"public, max-age={max(0, math.floor(fresh_for))}"
    if vary_cookie:
        # The same URL answers per player once a session cookie says who they are.
        response.vary.add("Cookie")
    return response


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON answer that no cache keeps (player or admin specific)."""
    response = Response(to_json(payload), status=status, mimetype=JSON)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def error_code(exc: BaseException) -> str:
    """The ``error`` field: the upstream's own (or the class's) code when there is one, else
    the name of the HTTP status or of the exception class, in snake case."""
    code = getattr(exc, "error", None)
    if isinstance(code, str) and code:
        return code
    if isinstance(exc, InvalidRequest):
        return "bad_request"
    name = exc.name if isinstance(exc, HTTPException) else type(exc).__name__
    return _snake(name or "error")


def _snake(name: str) -> str:
    """``"Not Found"`` → ``not_found``, ``"UpstreamTimeout"`` → ``upstream_timeout``,
    ``"HTTPError"`` → ``http_error``."""
    words = re.sub(r"([a-z0-9])([A-Z])|([A-Z])([A-Z][a-z])", r"\1\3_\2\4", name)
    return re.sub(r"[^a-z0-9]+", "_", words.lower()).strip("_")


def error_response(exc: BaseException) -> Response:
    """``{"error", "message"}`` with the status the error stands for; never a page or a
    traceback. The one place where exceptions become HTTP answers."""
    if isinstance(exc, ThrillConnectError):
        status = exc.code
        if status >= 500 and not exc.logged:
            current_state().client.failures.log(exc)  # once per failure, rate-limited
        # The public text: an upstream error's own message names the upstream call (logged above).
        response = json_response({"error": error_code(exc), "message": exc.public_message}, status)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, HTTPException):
        message = exc.description or exc.name
        response = json_response(
            {"error": error_code(exc), "message": str(message)}, exc.code or 500
        )
        if exc.code == 405 and (valid := getattr(exc, "valid_methods", None)):
            response.headers["Allow"] = ", ".join(valid)
        return response
    logger.exception("unexpected error in a thrillconnect route")
    return json_response({"error": "internal_error", "message": "internal error"}, 500)
