"""The portal the benchmarks serve with gunicorn: the extension plus a bare baseline route.

Configured from the environment (``THRILLCONNECT_URL``, ``BENCH_INSTANCE_ID`` and, for the
relay benchmarks, ``THRILLCONNECT_SERVICE_TOKEN`` and ``THRILLCONNECT_REDIS_URL``) so that
gunicorn can import ``bench.portal_app:create_app()``.
"""

from __future__ import annotations

import os

from flask import Flask, Response, current_app

from flask_thrillconnect import ThrillConnect


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="bench",
        THRILLCONNECT_URL=os.environ["THRILLCONNECT_URL"],
        THRILLCONNECT_OPERATOR_ID="thrilltech",
        THRILLCONNECT_BRAND_ID="brand1",
        # Tickers stay fresh for the throughput run; currencies expire at once so the
        # stale-while-revalidate run finds an expired entry on every request.
        THRILLCONNECT_CACHE_TTL={"ticker": 3600, "currencies": 0},
        THRILLCONNECT_TIMEOUT=(3.05, 30),
        # The relay's one upstream stream per process; without it, per-player streams.
        THRILLCONNECT_SERVICE_TOKEN=os.environ.get("THRILLCONNECT_SERVICE_TOKEN"),
        # Cluster mode (bench.cluster_relay); unset or empty: per process.
        THRILLCONNECT_REDIS_URL=os.environ.get("THRILLCONNECT_REDIS_URL") or None,
    )
    tc = ThrillConnect(app)
    # Served on 127.0.0.1 to the benchmark alone: it reads the figures of /health/detail.
    tc.admin_check(lambda: True)
    instance_id = os.environ["BENCH_INSTANCE_ID"]
    body: list[bytes] = []

    @app.get("/bare")
    def bare() -> Response:
        # The same bytes as the ticker route, without the extension in the way.
        if not body:
            service = current_app.extensions["thrillconnect"].service
            body.append(service.ticker(instance_id).result.entry.value)
        return Response(body[0], mimetype="application/json")

    return app
