"""The example portal under gunicorn with two workers (issue 11): a login made on one worker is
recognised by the other, with no Redis (the SQLite login store every worker reads) and only the
Flask-Login id in the cookie. Gunicorn serves ``example_portal.wsgi:app``, configured from the
environment, against the test's simulator; its access log names the worker of each request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from gunicorn_fixtures import gunicorn_portal

REPO = Path(__file__).resolve().parent.parent
WORKERS = 2
#: How long the test sends bursts of page loads waiting for both workers to serve one.
SPREAD_TIMEOUT = 30.0


@contextmanager
def example_portal(sim: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``(url, access log)`` of the example portal under gunicorn (gthread, two workers)."""
    access_log = tmp_path / "access.log"
    env = {
        "SECRET_KEY": "two-workers-secret",
        "THRILLCONNECT_URL": sim.url,
        "THRILLCONNECT_OPERATOR_ID": "thrilltech",
        "THRILLCONNECT_BRAND_ID": "brand1",
        "THRILLCONNECT_SERVICE_TOKEN": sim.service_token,
        "PORTAL_LOGINS_DB": str(tmp_path / "instance" / "logins.sqlite3"),
    }
    options = [
        "--workers", str(WORKERS), "--chdir", str(REPO),
        "--access-logfile", str(access_log), "--access-logformat", "%(p)s %(m)s %(U)s %(s)s",
    ]  # fmt: skip
    with gunicorn_portal(
        "gthread",
        env,
        app="example_portal.wsgi:app",
        extra_args=options,
        tmp_dir=tmp_path,
        ready_path="/login",
    ) as portal:
        yield portal.url, access_log


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
        example_portal(thrillconnect_sim, tmp_path) as (url, access_log),
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
