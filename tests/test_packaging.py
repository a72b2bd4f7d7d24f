"""The sdist and the wheel, built as a release would be: what they carry, and no setuptools
warning about packages.

The tree is copied to a temporary directory first, so that the build writes nothing (``build/``,
``*.egg-info``) into the checkout. The build runs without isolation, on the setuptools of the
environment (the ``dev`` extra), so it needs no network.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Never part of a build: caches, environments, build output, others' working files.
IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "node_modules",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    "_build",
    "test-artifacts",
    "instance",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".hypothesis",
)

pytest.importorskip("build", reason="the dev extra's 'build' builds the distributions")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """``(sdist, wheel, build output)``."""
    tmp = tmp_path_factory.mktemp("packaging")
    source, out = tmp / "src", tmp / "dist"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel, output


def test_building_prints_no_setuptools_warning_about_packages(built):
    _, _, output = built

    assert "is absent from the `packages` configuration" not in output
    assert "Package would be ignored" not in output


def test_the_wheel_carries_the_package_its_data_and_no_tests(built):
    _, wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())

    assert "flask_thrillconnect/py.typed" in names
    assert "flask_thrillconnect/templates/thrillconnect/widgets.html" in names
    for asset in ("thrillconnect.js", "thrillconnect.css", "thrillconnect.d.ts"):
        assert f"flask_thrillconnect/static/thrillconnect/{asset}" in names
    assert "flask_thrillconnect/testing/plugin.py" in names
    # The widgets' texts in other languages: the compiled catalogues Babel reads.
    for language in ("de", "sv"):
        assert f"flask_thrillconnect/translations/{language}/LC_MESSAGES/thrillconnect.mo" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names) or any(
        name.endswith(".dist-info/LICENSE") for name in names
    )
    assert not [name for name in names if name.startswith(("tests/", "example_portal/"))]
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_wheel_declares_the_extras_apart(built):
    _, wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()

    lines = text.splitlines()
    extras = {line.split(": ", 1)[1] for line in lines if line.startswith("Provides-Extra")}
    assert {"testing", "dev", "redis", "docs"} <= extras
    # Flask-Babel stays optional: an extra of its own (and the dev extra's, for the tests).
    assert "babel" in extras
    assert not [
        line
        for line in lines
        if line.startswith("Requires-Dist: flask-babel") and "extra ==" not in line
    ]
    assert "test" not in extras
    testing = [line for line in text.splitlines() if 'extra == "testing"' in line]
    assert any(line.startswith("Requires-Dist: pyjwt") for line in testing)
    assert not [line for line in testing if "playwright" in line or "ruff" in line]
    assert "Classifier: Programming Language :: Python :: 3.11" in text


def test_the_sdist_carries_license_docs_changes_and_the_example_portal(built):
    sdist, _, _ = built
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}

    for expected in (
        "LICENSE",
        "README.md",
        "CHANGES.rst",
        "docs/conf.py",
        "docs/index.rst",
        "docs/testing.rst",
        "example_portal/__init__.py",
        "flask_thrillconnect/py.typed",
        "flask_thrillconnect/templates/thrillconnect/widgets.html",
        "flask_thrillconnect/static/thrillconnect/thrillconnect.js",
    ):
        assert expected in names, expected
    assert not [name for name in names if name.startswith("docs/_build")]
    assert not [name for name in names if "__pycache__" in name]
