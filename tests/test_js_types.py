"""The TypeScript declarations of the page script (``thrillconnect.d.ts``, ``.d.mts``).

``tsc --noEmit`` type-checks ``tests/js/example.ts``, a portal script that uses every event and
method (and, with ``@ts-expect-error``, what the declarations must refuse). The field names the
declarations give each event's ``detail`` must be the ones the script really sends:
``tests/test_js_api.py`` checks the same ``DETAIL_FIELDS`` in Chromium.

TypeScript comes from npm (``package.json``, ``make node-deps``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STATIC = REPO / "flask_thrillconnect" / "static" / "thrillconnect"
DECLARATIONS = STATIC / "thrillconnect.d.ts"
TSC = REPO / "node_modules" / ".bin" / "tsc"
#: tsc takes a couple of seconds; more means something is wrong.
TSC_TIMEOUT = 120

#: Each interface of thrillconnect.d.ts → the fields the script puts in such an object.
DETAIL_FIELDS: dict[str, set[str]] = {
    "UpdateDetail": {"instanceId", "status", "currency", "rawCurrency", "pots", "via", "data"},
    "PotValue": {"id", "value", "formatted", "rawValue"},
    "WinDetail": {
        "instanceId", "jackpotName", "potId", "playerId", "mine", "amount", "currency",
        "formatted", "rawAmount", "rawCurrency", "timestamp", "data",
    },
    "RaffleWinDetail": {"instanceId", "jackpotName", "mine", "winners", "timestamp", "data"},
    "RaffleWinner": {
        "playerId", "mine", "amount", "currency", "formatted", "rawAmount", "rawCurrency",
    },
    "OptInDetail": {"instanceId", "playerId", "optedIn", "contribution", "data"},
    "StatusDetail": {"state", "upstream", "relayId", "lastSeq"},
    "RelayEventDetail": {"source", "name", "playerId", "seq", "timestamp", "data"},
    "ThrillConnectError": {"name", "status", "error", "body"},
}  # fmt: skip

#: Lists the members of each interface of a declaration file, with TypeScript's own parser.
_LIST_INTERFACES = """
const fs = require("fs");
const ts = require("typescript");
const file = process.argv[1];
const text = fs.readFileSync(file, "utf8");
const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
const found = {};
(function visit(node) {
  if (ts.isInterfaceDeclaration(node)) {
    found[node.name.text] = node.members.filter((m) => m.name).map((m) => m.name.getText(source));
  }
  ts.forEachChild(node, visit);
})(source);
process.stdout.write(JSON.stringify(found));
"""


@pytest.fixture(scope="module")
def tsc() -> Path:
    if not TSC.exists():
        pytest.fail("TypeScript is not installed: run `make node-deps` (npm ci)")
    return TSC


def run_tsc(tsc: Path, project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tsc), "--noEmit", "--pretty", "false", "-p", str(project)],
        capture_output=True,
        text=True,
        timeout=TSC_TIMEOUT,
        check=False,
    )


def test_the_typed_example_compiles_against_the_declarations(tsc: Path) -> None:
    result = run_tsc(tsc, REPO / "tests" / "js")

    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_declaration_fails_the_check(tsc: Path, tmp_path: Path) -> None:
    """The check can fail: the same example against a .d.ts that renamed one field."""
    static = tmp_path / "flask_thrillconnect" / "static" / "thrillconnect"
    static.mkdir(parents=True)
    shutil.copy(STATIC / "thrillconnect.d.mts", static)
    text = DECLARATIONS.read_text(encoding="utf-8")
    assert "  readonly optedIn: boolean;" in text
    (static / "thrillconnect.d.ts").write_text(
        text.replace("  readonly optedIn: boolean;", "  readonly opted_in: boolean;"),
        encoding="utf-8",
    )
    shutil.copytree(REPO / "tests" / "js", tmp_path / "tests" / "js")

    result = run_tsc(tsc, tmp_path / "tests" / "js")

    assert result.returncode != 0
    assert "optedIn" in result.stdout


def test_the_declared_detail_fields_are_the_ones_the_script_sends(tsc: Path) -> None:
    listed = subprocess.run(
        ["node", "-e", _LIST_INTERFACES, str(DECLARATIONS)],
        capture_output=True,
        text=True,
        timeout=TSC_TIMEOUT,
        check=True,
        cwd=REPO,  # where node_modules/typescript is
    )
    interfaces = json.loads(listed.stdout)

    for name, fields in DETAIL_FIELDS.items():
        assert set(interfaces[name]) == fields, name


def test_the_declarations_ship_beside_the_script() -> None:
    for name in (
        "thrillconnect.js",
        "thrillconnect.mjs",
        "thrillconnect.d.ts",
        "thrillconnect.d.mts",
    ):
        assert (STATIC / name).is_file(), name
    setup = (REPO / "setup.cfg").read_text(encoding="utf-8")
    assert "static/thrillconnect/*" in setup
