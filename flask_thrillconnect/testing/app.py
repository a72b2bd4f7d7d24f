"""The simulator's Flask application: REST routes, WebSocket routes and control routes.

Routes are thin: they check what the client sent, call the :class:`~.runtime.Platform` and
answer what :mod:`.wire` builds. Every refusal (a :class:`~.errors.SimError`) becomes a JSON
error in one handler.

- REST faults apply to ``/v1/*`` and ``/health`` (not to upgrades, ``OPTIONS`` or ``/_sim``);
  REST requests are counted by ``/_sim/stats`` whatever their outcome.
- Upgrades are checked before the handshake: ``refuse`` answers 503; a bad or expired service
  JWT, an unknown wallet token, a token of another brand or operator, or a missing or unknown
  currency 401; a valid service JWT of another operator 403.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from flask import Flask, Response, g, jsonify, request
from flask_sock import Sock
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from . import wire
from .connections import CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART, SimConnection
from .domain import EXCHANGE_RATES, OPERATOR_ID, WalletPlayer, bare_brand_id
from .errors import (
    FIELD_LIMIT,
    ApiError,
    InvalidInput,
    SimError,
    error_code,
    optional_text_field,
)
from .handlers import handle_client_message
from .runtime import REST_COUNTERS, Platform
from .tokens import InvalidServiceToken, verify_service_token

logger = logging.getLogger(__name__)

#: Largest client message accepted (simple-websocket closes with 1009 beyond).
MAX_CLIENT_MESSAGE_BYTES = 64 * 1024
MAX_TICKS_PER_CALL = 1000

# endpoint -> path; the seed page and the vendor guide spell the paths in several ways.
_SERVICE_WS_ROUTES = {
    "service_events": "/v1/events/service",
    "service_events_unversioned": "/events/service",
}
_PLAYER_WS_ROUTES = {
    "player_events": "/v1/events/<operator_id>/<brand_id>",
    "player_events_unversioned": "/events/<operator_id>/<brand_id>",
    "player_events_singular": "/event/<operator_id>/<brand_id>",
}


def create_app(platform: Platform) -> Flask:
    """The simulator's Flask application, serving ``platform``."""
    app = Flask("flask_thrillconnect.testing")
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": MAX_CLIENT_MESSAGE_BYTES}
    _register_hooks(app, platform)
    _register_rest_routes(app, platform)
    _register_websocket_routes(app, platform)
    _register_control_routes(app, platform)
    return app


def error_response(status: int, code: str, message: str) -> Response:
    """The JSON error every failure of the simulator answers with."""
    response = jsonify(wire.error_body(code, message))
    response.status_code = status
    return response


def _register_hooks(app: Flask, platform: Platform) -> None:
    @app.before_request
    def count_and_gate() -> Response | None:
        if request.endpoint in REST_COUNTERS and request.method != "OPTIONS":
            platform.requests.count(request.endpoint)
        if request.endpoint in _SERVICE_WS_ROUTES or request.endpoint in _PLAYER_WS_ROUTES:
            return _admit_websocket(platform)
        if _is_rest_request():
            fault = platform.faults.rest_fault()
            if fault is not None:
                return error_response(fault.status, fault.code, fault.message)
        return None

    @app.after_request
    def add_cors_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin and not _is_websocket_upgrade():
            response.vary.add("Origin")
            if platform.world.cors.allows(origin):
                response.headers["Access-Control-Allow-Origin"] = origin
                if request.method == "OPTIONS":
                    response.headers["Access-Control-Allow-Methods"] = "GET, PUT, DELETE"
                    response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                        "Access-Control-Request-Headers", "Authorization, Content-Type"
                    )
                    response.headers["Access-Control-Max-Age"] = "600"
        return response

    @app.errorhandler(SimError)
    def refused(e: SimError) -> Response:
        response = error_response(e.status, e.code, e.message)
        if e.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        response = error_response(e.code or 500, error_code(e.name), e.description or e.name)
        if isinstance(e, MethodNotAllowed) and e.valid_methods:
            response.headers["Allow"] = ", ".join(e.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(e: Exception) -> Response:
        logger.exception("simulator request failed")
        return error_response(500, "internal_error", "the simulator failed")


def _admit_websocket(platform: Platform) -> Response | None:
    """Check an upgrade before the handshake: a refusal gets its HTTP answer; an admitted one
    leaves its player (or ``None``) in ``g.ws_player``."""
    try:
        g.ws_player = _upgrade_player(platform)
    except ApiError as e:
        # A plain answer, no Bearer challenge: WebSocket credentials travel in the query.
        return error_response(e.status, e.code, e.message)
    return None


def _upgrade_player(platform: Platform) -> WalletPlayer | None:
    if platform.faults.refusing:
        raise ApiError(503, "service_unavailable", "WebSocket upgrades are refused")
    token = request.args.get("token")
    if request.endpoint in _SERVICE_WS_ROUTES:
        _check_service_token(platform, token)
        return None
    args = request.view_args or {}
    player = platform.world.wallet.for_token(token)
    if (
        player is None
        or args.get("operator_id") != player.operator_id
        or bare_brand_id(args.get("brand_id", "")) != player.brand_id
    ):
        raise ApiError(401, "unauthorized", "unknown player token for this brand")
    if request.args.get("currency") not in EXCHANGE_RATES:
        raise ApiError(401, "unauthorized", "a known player currency is required")
    return player


def _require_service_token(platform: Platform) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "a Bearer service token is required")
    _check_service_token(platform, token.strip())


def _check_service_token(platform: Platform, token: str | None) -> None:
    try:
        claims = verify_service_token(platform.secret, token)
    except InvalidServiceToken as e:
        raise ApiError(401, "unauthorized", str(e)) from e
    if claims.org_id != OPERATOR_ID:
        raise ApiError(403, "forbidden", "the token is for another operator")


def _register_rest_routes(app: Flask, platform: Platform) -> None:
    world = platform.world

    @app.get("/health")
    def health() -> Response:
        return jsonify(wire.health())

    @app.get("/v1/currencies")
    def currencies() -> Response:
        return jsonify(world.currencies())

    @app.get("/v1/thrillpots/sources")
    def sources() -> Response:
        owner_id = _query_text("owner_id")
        if owner_id is None:
            raise InvalidInput("owner_id_required", "owner_id is required")
        return jsonify(world.sources(owner_id, _query_text("name")))

    @app.get("/v1/thrillpots/instances/source/<source_id>/brand/<brand_id>")
    def jackpot(source_id: str, brand_id: str) -> Response:
        segments = [s.strip() for s in (_query_text("segments") or "").split(",") if s.strip()]
        return jsonify(
            world.jackpot_for_source(
                source_id,
                brand_id,
                player_id=_query_text("player_id"),
                country=_query_text("country_code"),
                segments=segments,
            )
        )

    @app.get("/v1/thrillpots/instances/<instance_id>/ticker")
    def ticker(instance_id: str) -> Response:
        return jsonify(world.ticker(instance_id))

    @app.route("/v1/cors", methods=["GET", "PUT", "DELETE"])
    def cors() -> Response:
        _require_service_token(platform)
        if request.method == "GET":
            return jsonify(wire.cors_list(world.cors.rules()))
        body = _json_object({"cors_origin_list"})
        if request.method == "PUT":
            return jsonify(wire.cors_list(world.cors.upsert(body.get("cors_origin_list"))))
        return jsonify(wire.cors_removal(*world.cors.remove(body.get("cors_origin_list"))))


def _register_websocket_routes(app: Flask, platform: Platform) -> None:
    sock = Sock(app)
    handle_message = functools.partial(handle_client_message, platform)

    def serve(ws: Any) -> None:
        connection = SimConnection(ws, g.ws_player, platform.faults)
        if not platform.broadcaster.register(connection):
            connection.request_close(CLOSE_GOING_AWAY, "simulator stopping")
        try:
            connection.serve(handle_message)
        finally:
            platform.broadcaster.unregister(connection)

    # flask-sock passes the path's variables, which admission has already checked.
    def service_events(ws: Any) -> None:
        serve(ws)

    def player_events(ws: Any, operator_id: str, brand_id: str) -> None:
        serve(ws)

    for endpoint, path in _SERVICE_WS_ROUTES.items():
        sock.route(path, endpoint=endpoint)(service_events)
    for endpoint, path in _PLAYER_WS_ROUTES.items():
        sock.route(path, endpoint=endpoint)(player_events)


def _register_control_routes(app: Flask, platform: Platform) -> None:
    @app.post("/_sim/tick")
    def sim_tick() -> Response:
        count = _json_object({"count"}, empty_ok=True).get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int):
            raise InvalidInput("invalid_body", "count must be an integer")
        if not 1 <= count <= MAX_TICKS_PER_CALL:
            raise InvalidInput("invalid_body", f"count must be between 1 and {MAX_TICKS_PER_CALL}")
        platform.tick(count)
        return jsonify({"ticks": count})

    @app.post("/_sim/win")
    def sim_win() -> Response:
        body = _json_object({"instance_id", "pot_id", "player_id"})
        instance_id = _optional_text(body, "instance_id")
        if instance_id is None:
            raise InvalidInput("invalid_body", "instance_id is required")
        return jsonify(
            platform.win(
                instance_id, _optional_text(body, "pot_id"), _optional_text(body, "player_id")
            )
        )

    @app.get("/_sim/stats")
    def sim_stats() -> Response:
        return jsonify(platform.stats())

    @app.route("/_sim/faults", methods=["GET", "POST"])
    def sim_faults() -> Response:
        if request.method == "POST" and platform.faults.update(request.get_json(silent=True)):
            platform.broadcaster.close_all(CLOSE_SERVICE_RESTART, "service restart")
        return jsonify(platform.faults.snapshot())

    @app.post("/_sim/players")
    def sim_players() -> tuple[Response, int]:
        body = _json_object({"id", "token", "currency", "country", "segments", "brand_id"})
        for key in ("id", "token", "currency", "country"):
            if key not in body:
                raise InvalidInput("invalid_body", f"{key} is required")
        entry = platform.world.wallet.add(
            body["id"],
            body["token"],
            body["currency"],
            body["country"],
            body.get("segments", []),
            body.get("brand_id", "brand1"),
        )
        return jsonify(entry), 201


def _is_websocket_upgrade() -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _is_rest_request() -> bool:
    path = request.path
    return (
        request.method != "OPTIONS"
        and not _is_websocket_upgrade()
        and (path == "/health" or path.startswith("/v1/"))
    )


def _json_object(allowed: set[str], *, empty_ok: bool = False) -> dict[str, Any]:
    if empty_ok and not request.get_data():
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("invalid_body", "the body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise InvalidInput("invalid_body", f"unknown fields: {', '.join(sorted(unknown))}")
    return body


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    return optional_text_field(body, key, code="invalid_body")


def _query_text(name: str) -> str | None:
    value = request.args.get(name)
    if value is not None and len(value) > FIELD_LIMIT:
        raise InvalidInput("invalid_parameter", f"{name} is longer than {FIELD_LIMIT} chars")
    return value or None
