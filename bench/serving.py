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
def gunicorn_portal(
    sim: Simulator,
    gunicorn_args: Sequence[str],
    *,
    service_token: bool = False,
    redis_url: str | None = None,
) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    """``(url, port, master)`` of ``bench.portal_app`` served against ``sim`` (in cluster mode
    with ``redis_url``); stopped after."""
    port = free_port()
    env: Mapping[str, str] = {
        **os.environ,
        "THRILLCONNECT_URL": sim.url,
        "BENCH_INSTANCE_ID": sim.instance_ids["progressive"],
        "THRILLCONNECT_REDIS_URL": redis_url or "",
    }
    if service_token:
        env = {**env, "THRILLCONNECT_SERVICE_TOKEN": sim.service_token}
    command = [
        sys.executable, "-m", "gunicorn", *gunicorn_args,
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
        "bench.portal_app:create_app()",
    ]  # fmt: skip
    master = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _answers(url):
            if time.monotonic() > deadline or master.poll() is not None:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.1)
        yield url, port, master
    finally:
        master.terminate()
        try:
            master.wait(timeout=20)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/bare", timeout=2).ok
    except requests.ConnectionError:
        return False
