"""The blueprint: the caching REST proxy, the opt-in route, CORS admin, health and OpenAPI."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from flask import Blueprint, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from marshmallow import ValidationError
from werkzeug.exceptions import (
    BadRequest,
    Forbidden,
    HTTPException,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
)
from werkzeug.routing import PathConverter

from . import models
from .limits import MAX_RELAY_ID_LENGTH, MAX_REQUEST_BODY_BYTES, MAX_SEQ
from .models import CorsRemoveBody, CorsUpsertBody, OptInBody
from .openapi import openapi_document
from .optin import send_opt_in
from .relay.endpoint import serve_browser
from .responses import cached_json, error_response, json_response
from .security import CSRF_HEADER, check_csrf_token, check_origin, refuse_flask_wtf_token
from .sockets import decline_compression, upgraded_response
from .state import current_state

bp = Blueprint(
    "thrillconnect",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


class AnyTextConverter(PathConverter):
    """Like ``path``, but also matches control characters such as a newline.

    Ids must reach the validator, which answers 400, instead of falling through
    routing into the portal's own (HTML) 404.
    """

    regex = r"[^/][\s\S]*?"


@bp.record_once
def _add_converter(setup: BlueprintSetupState) -> None:
    # Before any route: the converter must exist on the app when the rules are added.
    setup.app.url_map.converters.setdefault("tc_any", AnyTextConverter)


# Flask's automatic OPTIONS answer would list the catch-all route's methods in ``Allow``;
# ``unknown_route`` answers OPTIONS (and 405) with the methods a path really has.
get = partial(bp.get, provide_automatic_options=False)
post = partial(bp.post, provide_automatic_options=False)
put = partial(bp.put, provide_automatic_options=False)
delete = partial(bp.delete, provide_automatic_options=False)


@bp.errorhandler(Exception)
def _handle_error(exc: Exception) -> Response:
    return error_response(exc)


def _load_body(schema: Any) -> Any:
    """The request's JSON object, validated by ``schema``; a clear 400 for anything else."""
    bad_body = BadRequest(
        f"the body must be a JSON object (application/json) of at most "
        f"{MAX_REQUEST_BODY_BYTES} bytes, sent with a Content-Length"
    )
    # Only a declared, bounded length is read: a chunked body could be endless.
    length = request.content_length
    if not request.is_json or length is None or length > MAX_REQUEST_BODY_BYTES:
        raise bad_body
    try:
        payload = models.parse_json(request.get_data(cache=True), MAX_REQUEST_BODY_BYTES)
    except ValueError:
        raise bad_body from None
    if not isinstance(payload, dict):
        raise bad_body
    try:
        return schema.load(payload)
    except ValidationError as exc:
        raise BadRequest(_validation_message(exc.messages)) from None


_SHOWABLE_FIELD = re.compile(r"[A-Za-z0-9_]{1,40}")


def _validation_message(messages: Any) -> str:
    """The first problem marshmallow found, as ``field: problem``; a field name the browser
    made up (an unknown key) is not echoed, since it can be long or hold control characters."""
    if isinstance(messages, dict):
        field, problem = next(iter(messages.items()))
        shown = str(field) if _SHOWABLE_FIELD.fullmatch(str(field)) else "a field"
        if isinstance(problem, list) and problem:
            problem = problem[0]
        elif isinstance(problem, dict):
            return f"{shown}: {_validation_message(problem)}"
        return f"{shown}: {problem}"
    return str(messages)


def _guard_state_change() -> None:
    """Origin first, then the CSRF token bound to whoever is asking."""
    current = current_state()
    check_origin(current.settings.allowed_origins)
    player = current.load_player()
    token = request.headers.get(CSRF_HEADER)
    try:
        check_csrf_token(token, player.id if player else None, current.settings.csrf_max_age)
    except Forbidden:
        # Flask-WTF's CSRFProtect stands aside for this blueprint (see security.py); say so
        # when a portal's script sent its token here instead of ours.
        refuse_flask_wtf_token(token)
        raise


# -- shared and player-specific reads -------------------------------------------------------


def _requester() -> str:
    """Whose budget of upstream misses a request spends: the player, else the address.

    Behind a reverse proxy, ``remote_addr`` is the browser's only with ProxyFix (see the
    deployment docs); without it every anonymous visitor shares the proxy's budget.
    """
    player = current_state().load_player()
    return f"player:{player.id}" if player else f"addr:{request.remote_addr}"


@get("/v1/currencies")
def currencies() -> Response:
    return cached_json(current_state().service.currencies())


@get("/v1/thrillpots/sources")
def sources() -> Response:
    name = request.args.get("name") or None
    return cached_json(current_state().service.sources(name, requester=_requester()))


@get("/v1/thrillpots/instances/source/<tc_any:source_id>")
def jackpot_for_source(source_id: str) -> Response:
    current = current_state()
    answer = current.service.jackpot(source_id, current.load_player(), requester=_requester())
    return cached_json(answer, vary_cookie=True)


@get("/v1/thrillpots/instances/<tc_any:instance_id>/ticker")
def ticker(instance_id: str) -> Response:
    return cached_json(current_state().service.ticker(instance_id, requester=_requester()))


# -- opt-in -------------------------------------------------------------------------------------


@post("/v1/thrillpots/optin")
def opt_in() -> Response:
    current = current_state()
    player = current.load_player()
    if player is None:
        raise Unauthorized("log in to opt in to a jackpot")
    _guard_state_change()
    body = _load_body(OptInBody())
    instance_id = body.get("instance_id")
    if instance_id is not None:
        current.service.require_known_instance(instance_id)
    else:
        answer = current.service.jackpot(body["source_id"], player, requester=_requester())
        instance_id = models.JackpotSchema().loads(answer.result.entry.value).id
    event = send_opt_in(
        current.client,
        player,
        instance_id,
        body["opt_in"],
        body.get("contribution_value"),
        timeout=current.settings.optin_timeout,
    )
    current.service.forget_player(player.id)
    return json_response(models.OptInEventSchema().dump(event))


# -- CORS rules (admin) -----------------------------------------------------------------------


def _cors_admin() -> Any:
    current = current_state()
    if not current.settings.service_token:
        raise NotFound("CORS administration needs THRILLCONNECT_SERVICE_TOKEN")
    if not current.is_admin():
        raise Forbidden("only administrators may manage CORS rules")
    return current.client


@get("/v1/cors")
def cors_list() -> Response:
    rules = _cors_admin().cors_list()
    return json_response({"cors_origin_list": models.CorsOriginSchema(many=True).dump(rules)})


@put("/v1/cors")
def cors_upsert() -> Response:
    client = _cors_admin()
    _guard_state_change()
    body = _load_body(CorsUpsertBody())
    rules = client.cors_upsert(body["cors_origin_list"])
    return json_response({"cors_origin_list": models.CorsOriginSchema(many=True).dump(rules)})


@delete("/v1/cors")
def cors_remove() -> Response:
    client = _cors_admin()
    _guard_state_change()
    body = _load_body(CorsRemoveBody())
    removed, rules = client.cors_remove(body["cors_origin_list"])
    return json_response(
        {"removed": removed, "cors_origin_list": models.CorsOriginSchema(many=True).dump(rules)}
    )


# -- the relay WebSocket --------------------------------------------------------------------

_RELAY_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_RELAY_ID_LENGTH}}}")
# Per-request values live in the request's environ, which dies with the request.
_RESUME_KEY = "flask_thrillconnect.resume"


@bp.before_request
def _guard_events_handshake() -> None:
    """Origin, identity and resume parameters are settled before the upgrade is accepted."""
    if request.endpoint != "thrillconnect.events":
        return
    current = current_state()
    check_origin(current.settings.allowed_origins)
    since = request.args.get("since")
    if since is not None and not (
        since.isascii() and since.isdigit() and len(since) <= len(str(MAX_SEQ))
        and int(since) <= MAX_SEQ
    ):
        raise BadRequest("since must be the last seq received (a whole number)")
    relay_id = request.args.get("relay_id")
    if relay_id is not None and not _RELAY_ID.fullmatch(relay_id):
        raise BadRequest("relay_id is not valid")
    request.environ[_RESUME_KEY] = (int(since) if since is not None else None, relay_id)
    current.load_player()
    # Each event is encoded once for every browser: per-connection compression would undo
    # that, so permessage-deflate is never negotiated.
    decline_compression(request.environ)


# Not flask-sock's ``@sock.route``: it starts a reader thread per socket, and the relay reads
# every socket from one thread of its own (see flask_thrillconnect.sockets).
@bp.route("/v1/events", websocket=True, provide_automatic_options=False)
def events() -> Response:
    current = current_state()
    since, relay_id = request.environ[_RESUME_KEY]
    serve_browser(
        request.environ,
        current.relay,
        current.load_player(),
        since=since,
        relay_id=relay_id,
        optin_timeout=current.settings.optin_timeout,
    )
    return upgraded_response(request.environ)


# -- operations -------------------------------------------------------------------------------


@get("/health")
def health() -> Response:
    """Public liveness: the status word only."""
    return json_response(current_state().liveness())


@get("/health/detail")
def health_detail() -> Response:
    """Upstream, stream, relay, cache and Redis figures: for ``admin_check`` only."""
    current = current_state()
    if not current.is_admin():
        raise Forbidden("only administrators may read the health detail")
    return json_response(current.health())


@get("/openapi.json")
def openapi() -> Response:
    response = json_response(openapi_document(current_state().settings.url_prefix))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


#: Every method the catch-all takes, so that none falls through to the portal's HTML pages.
_ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")


@bp.route("/<tc_any:_unknown>", methods=_ALL_METHODS, provide_automatic_options=False)
def unknown_route(_unknown: str) -> Response:
    """JSON 404, 405 and OPTIONS for the blueprint's paths.

    Routing errors never reach blueprint error handlers, so this rule catches every path and
    method under the prefix that no route took; it answers 405 (with the path's real ``Allow``)
    when another route has the path, else 404.
    """
    allowed = _methods_of_path()
    if not allowed:
        raise NotFound("no such thrillconnect route")
    if request.method in allowed:  # only as a WebSocket, and this is no upgrade
        raise BadRequest("this route is a WebSocket: open it with a WebSocket handshake")
    allowed.add("OPTIONS")
    if request.method == "OPTIONS":
        response = Response(status=204)
        response.headers["Allow"] = ", ".join(sorted(allowed))
        return response
    raise MethodNotAllowed(valid_methods=sorted(allowed))


def _methods_of_path() -> set[str]:
    """The methods that a route other than the catch-all answers at this request's path."""
    adapter = current_app.create_url_adapter(request)
    assert adapter is not None  # always, inside a request
    methods = set()
    for method in _ALL_METHODS:
        for websocket in (False, True):
            try:
                rule, _ = adapter.match(method=method, return_rule=True, websocket=websocket)
            except HTTPException:  # no rule, a redirect, or a converter refusing the value
                continue
            if rule.endpoint != request.endpoint:
                methods.add(method)
    return methods
