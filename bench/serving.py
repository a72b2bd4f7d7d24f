"""Serving ``bench.portal_app`` with gunicorn on a free loopback port, for every benchmark."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import requests

from flask_thrillconnect.testing import Simulator

STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(
    app: str,
    gunicorn_args: Sequence[str],
    env: Mapping[str, str],
    *,
    ready_path: str,
    stop_timeout: float = 20.0,
) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    """``(url, port, master)`` of gunicorn serving ``app`` (``module:create_app()``) with
    ``env`` added to the environment, once ``ready_path`` answers 200; stopped after."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", *gunicorn_args,
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning", app,
    ]  # fmt: skip
    master = subprocess.Popen(command, env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _answers(url + ready_path):
            if time.monotonic() > deadline or master.poll() is not None:
                raise RuntimeError(f"gunicorn ({app}) did not start")
            time.sleep(0.1)
        yield url, port, master
    finally:
        master.terminate()
        try:
            master.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait(timeout=10)


@contextmanager
def gunicorn_portal(
    sim: Simulator,
    gunicorn_args: Sequence[str],
    *,
    service_token: bool = False,
    redis_url: str | None = None,
) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    """``(url, port, master)`` of ``bench.portal_app`` served against ``sim`` (in cluster mode
    with ``redis_url``); stopped after."""
    env = {
        "THRILLCONNECT_URL": sim.url,
        "BENCH_INSTANCE_ID": sim.instance_ids["progressive"],
        "THRILLCONNECT_REDIS_URL": redis_url or "",
    }
    if service_token:
        env["THRILLCONNECT_SERVICE_TOKEN"] = sim.service_token
    with serve("bench.portal_app:create_app()", gunicorn_args, env, ready_path="/bare") as served:
        yield served


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False
