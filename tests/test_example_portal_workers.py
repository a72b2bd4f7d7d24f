"""The example portal under gunicorn with two workers (issue 11): a login made on one worker is
recognised by the other, with no Redis (the SQLite login store every worker reads) and only the
Flask-Login id in the cookie. Gunicorn serves ``example_portal.wsgi:app``, configured from the
environment, against the test's simulator; its access log names the worker of each request.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
WORKERS = 2
STARTUP_TIMEOUT = 30.0
#: How long the test sends bursts of page loads waiting for both workers to serve one.
SPREAD_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def gunicorn_portal(sim: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``(url, access log)`` of the example portal under gunicorn (gthread, two workers)."""
    port = _free_port()
    access_log = tmp_path / "access.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THRILLCONNECT_", "PORTAL_"))}
    env.update(
        SECRET_KEY="two-workers-secret",
        THRILLCONNECT_URL=sim.url,
        THRILLCONNECT_OPERATOR_ID="thrilltech",
        THRILLCONNECT_BRAND_ID="brand1",
        THRILLCONNECT_SERVICE_TOKEN=sim.service_token,
        PORTAL_LOGINS_DB=str(tmp_path / "instance" / "logins.sqlite3"),
    )
    command = [
        sys.executable, "-m", "gunicorn",
        "--worker-class", "gthread", "--workers", str(WORKERS), "--threads", "8",
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--chdir", str(REPO),
        "--access-logfile", str(access_log), "--access-logformat", "%(p)s %(m)s %(U)s %(s)s",
        "example_portal.wsgi:app",
    ]  # fmt: skip
    master = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert master.poll() is None, f"gunicorn exited with {master.returncode}"
            assert time.monotonic() < deadline, "gunicorn did not start"
            try:
                if requests.get(f"{url}/login", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        yield url, access_log
    finally:
        master.terminate()
        try:
            master.wait(timeout=20)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait(timeout=10)


def workers_of(access_log: Path, method: str, path: str) -> list[str]:
    """The pids of the workers that answered ``method path``, in log order."""
    return [
        line.split()[0]
        for line in access_log.read_text().splitlines()
        if line.split()[1:3] == [method, path]
    ]


def test_a_login_on_one_worker_is_recognised_by_the_other(
    thrillconnect_sim: Any, tmp_path: Path
) -> None:
    with (
        gunicorn_portal(thrillconnect_sim, tmp_path) as (url, access_log),
        requests.Session() as browser,
    ):
        browser.headers["Connection"] = "close"  # a new connection, so any worker, each time
        form = browser.get(f"{url}/login", timeout=10).text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form)
        assert token is not None, form
        logged_in = browser.post(
            f"{url}/login",
            data={"csrf_token": token.group(1), "player_id": "player_00002",
                  "token": "token_00002", "currency": "GBP", "country": "GB"},
            allow_redirects=False,
            timeout=10,
        )  # fmt: skip
        assert logged_in.status_code == 302, logged_in.text

        def lobby(_: int) -> str:
            return requests.get(
                f"{url}/", cookies=browser.cookies, headers={"Connection": "close"}, timeout=10
            ).text

        pages: list[str] = []
        deadline = time.monotonic() + SPREAD_TIMEOUT
        with ThreadPoolExecutor(max_workers=8) as pool:
            while len(set(workers_of(access_log, "GET", "/"))) < WORKERS:
                assert time.monotonic() < deadline, "the page loads all reached one worker"
                pages.extend(pool.map(lobby, range(8)))
        cookie = browser.cookies.get("session") or ""

    (login_worker,) = workers_of(access_log, "POST", "/login")
    lobby_workers = workers_of(access_log, "GET", "/")
    assert login_worker in lobby_workers
    assert {w for w in lobby_workers if w != login_worker}, "no other worker served the lobby"
    recognised = ['data-portal-player="player_00002"' in page for page in pages]
    assert all(recognised), f"{recognised.count(False)} of {len(pages)} loads were anonymous"
    assert "token_00002" not in cookie
