"""The portal under real gunicorn, for the tests that need a real server model.

:func:`gunicorn_portal` starts gunicorn (any worker class) on a free 127.0.0.1 port, serving
:func:`create_app` (configured from the environment, so every worker process can import it)
or any other ``module:create_app()`` on the tests' path, and stops it afterwards; every wait
is bounded. The workers of this portal run :data:`GUNICORN_CONF`, the hooks
``docs/deployment.rst`` advises: relays close (1001) as soon as the worker is told to stop.

:func:`create_app`'s portal has test-only routes under ``/_test/``: ``/_test/ready`` (the
worker's pid) and ``POST /_test/publish`` (``{"count": n, "padding": k}`` publishes ``n``
broadcast WinEvents of ``k`` padding characters straight into this worker's relay hub, the
only way a test outside the process can relay more than the simulator produces).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from flask import Flask, request

from flask_thrillconnect import ThrillConnect

#: The worker classes the relay's server tests run under.
WORKER_CLASSES = ("gthread", "gevent")
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
RELAY_PATH = "/thrillconnect/v1/events"
#: The gunicorn configuration every test portal runs.
GUNICORN_CONF = """
def post_worker_init(worker):
    from flask_thrillconnect.servers import close_relays_on_stop
    close_relays_on_stop(worker)


def worker_exit(server, worker):
    from flask_thrillconnect import shutdown
    shutdown()
"""


def create_app() -> Flask:
    """The portal a gunicorn worker serves, configured from the environment."""
    app = Flask("gunicorn_portal")
    app.config.update(
        SECRET_KEY="gunicorn-test",
        THRILLCONNECT_URL=os.environ["THRILLCONNECT_URL"],
        THRILLCONNECT_OPERATOR_ID="thrilltech",
        THRILLCONNECT_BRAND_ID="brand1",
        THRILLCONNECT_SERVICE_TOKEN=os.environ.get("THRILLCONNECT_SERVICE_TOKEN") or None,
        THRILLCONNECT_TIMEOUT=(1, 2),
    )
    tc = ThrillConnect(app)
    # Loopback only, in a test: anyone may read /health/detail.
    tc.admin_check(lambda: True)

    @app.get("/_test/ready")
    def ready() -> dict[str, int]:
        return {"pid": os.getpid()}

    @app.post("/_test/publish")
    def publish() -> dict[str, int]:
        body = request.get_json()
        relay = app.extensions["thrillconnect"].relay
        win = {"msg_type": "Event", "source": "thrillpots", "msg_name": "WinEvent",
               "operator_id": "thrilltech", "brand_id": "brand1", "player_id": None,
               "data": {"padding": "x" * int(body.get("padding", 0))}, "timestamp": 0}  # fmt: skip
        for _ in range(int(body["count"])):
            relay.hub.publish(win, "broadcast")
        return {"published": int(body["count"])}

    return app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class GunicornPortal:
    """A running gunicorn master and its (single, unless asked otherwise) worker."""

    url: str
    port: int
    master: subprocess.Popen[bytes]
    worker_class: str

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{RELAY_PATH}"

    def worker_pid(self) -> int:
        return int(requests.get(f"{self.url}/_test/ready", timeout=5).json()["pid"])

    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = requests.get(
            f"{self.url}/thrillconnect/health/detail", timeout=10
        ).json()
        return answer

    def publish(self, count: int, padding: int = 0) -> None:
        answer = requests.post(
            f"{self.url}/_test/publish", json={"count": count, "padding": padding}, timeout=60
        )
        answer.raise_for_status()

    def stop(self) -> None:
        """SIGTERM (gunicorn's graceful stop), then wait; killed when it does not end."""
        if self.master.poll() is None:
            self.master.send_signal(signal.SIGTERM)
        try:
            self.master.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.master.kill()
            self.master.wait(timeout=10)


def worker_args(worker_class: str, browsers: int = 50) -> list[str]:
    """gunicorn options for one worker of ``worker_class`` that holds ``browsers`` sockets."""
    if worker_class == "gthread":
        # One thread per open browser socket, and some for ordinary requests.
        return ["--worker-class", "gthread", "--threads", str(browsers + 16)]
    if worker_class == "gevent":
        return ["--worker-class", "gevent", "--worker-connections", str(browsers + 64)]
    raise ValueError(f"unknown worker class {worker_class!r}")


@contextmanager
def gunicorn_portal(
    worker_class: str,
    env: Mapping[str, str],
    *,
    app: str = "gunicorn_fixtures:create_app()",
    browsers: int = 50,
    extra_args: Sequence[str] = (),
    tmp_dir: Path | None = None,
    ready_path: str = "/_test/ready",
) -> Iterator[GunicornPortal]:
    """gunicorn with one ``worker_class`` worker serving ``app`` with ``env`` added to the
    environment (``THRILLCONNECT_URL`` at least); stopped (SIGTERM) when the block ends."""
    port = free_port()
    conf_dir = tmp_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    conf = conf_dir / f"gunicorn_conf_{port}.py"
    conf.write_text(GUNICORN_CONF)
    command = [
        sys.executable, "-m", "gunicorn", *worker_args(worker_class, browsers),
        "--workers", "1", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
        "--graceful-timeout", "3", "--config", str(conf),
        "--pythonpath", str(Path(__file__).parent), *extra_args, app,
    ]  # fmt: skip
    master = subprocess.Popen(command, env={**os.environ, **env})
    portal = GunicornPortal(f"http://127.0.0.1:{port}", port, master, worker_class)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _answers(portal.url + ready_path):
            if master.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {master.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not answer in time")
            time.sleep(0.1)
        yield portal
    finally:
        portal.stop()
        conf.unlink(missing_ok=True)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False
