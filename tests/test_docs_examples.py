"""The examples in the README and the quickstart run as written, against the simulator."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_python() -> str:
    text = (ROOT / "README.md").read_text()
    return "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))


def rst_python(name: str) -> str:
    """The literal blocks (after ``::``) of a docs page that are Python, joined in order."""
    lines = (ROOT / "docs" / name).read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        if lines[index].rstrip().endswith("::"):
            index += 1
            block = []
            while index < len(lines) and (not lines[index].strip() or lines[index].startswith(" ")):
                block.append(lines[index])
                index += 1
            code = textwrap.dedent("\n".join(block)).strip()
            if _is_python(code):
                blocks.append(code)
        else:
            index += 1
    return "\n\n".join(blocks)


def _is_python(code: str) -> bool:
    if not code or code.startswith(("pip ", "python -m", "gunicorn ", "location ")):
        return False
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def run_example(code: str, sim) -> dict:
    """Execute an example with the simulator standing in for ThrillConnect."""
    assert "THRILLCONNECT_URL" in code
    code = code.replace('"https://thrillconnect.example"', repr(sim.url))
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(code, "<docs example>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("source", ["README.md", "quickstart.rst"])
def test_the_lobby_example_serves_jackpot_values(source, thrillconnect_sim):
    code = readme_python() if source == "README.md" else rst_python(source)
    namespace = run_example(code, thrillconnect_sim)
    app = namespace["app"]

    # The example's server-side user records; its session (Flask-Login's) holds the user id only.
    namespace["USERS"]["u2"] = {"player_id": "player_00002", "wallet_token": "token_00002",
                                "currency": "GBP", "country": "GB"}  # fmt: skip

    with app.test_client() as client:
        anonymous = client.get("/")
        with client.session_transaction() as session:
            session["_user_id"] = "u2"  # what flask_login.login_user() stores
        player = client.get("/")
        with client.session_transaction() as session:
            assert session["_user_id"] == "u2"
            assert "token_00002" not in repr(dict(session))

    assert anonymous.status_code == player.status_code == 200
    assert set(anonymous.get_json()["pots"]) == {"minor", "major", "mega"}
    # Two upstream calls: the player's request was answered for the player, not from the
    # anonymous visitor's cache entry, so the loader found them.
    assert thrillconnect_sim.stats()["requests"]["jackpot"] == 2


def test_no_example_reads_a_token_from_the_session():
    """Flask's default session is a cookie the browser can read: no example keeps a token there."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst"))]
    reads_token = re.compile(r"session(\[|\.get\()\s*['\"][^'\"]*token", re.I)

    assert [page.name for page in pages if reads_token.search(page.read_text())] == []
