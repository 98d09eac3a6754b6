"""A non-editable install (a wheel, a container) carries what the package reads at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(build), "HOME": str(build)},
    )
    (path,) = out.glob("triage-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_ships_prompts_taxonomies_and_migrations(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    prompts = {f"prompts/{p.relative_to(ROOT / 'prompts')}" for p in (ROOT / "prompts").rglob("*.j*")}
    assert prompts and prompts <= names, sorted(prompts - names)
    assert {"prompts/__init__.py", "prompts/CHANGELOG.md"} <= names
    for taxonomy in (ROOT / "server" / "taxonomies").glob("*.yaml"):
        assert f"server/taxonomies/{taxonomy.name}" in names
    migrations = {
        f"server/store/migrations/versions/{p.name}" for p in (ROOT / "server/store/migrations/versions").glob("*.py")
    }
    assert migrations and migrations <= names
    assert {"server/store/alembic.ini", "server/store/migrations/env.py"} <= names
    # The tests, data sets and model folders are not package data.
    assert not [n for n in names if n.startswith(("tests/", "data/", "models/"))]


def test_installed_package_finds_its_files_without_the_checkout(wheel: zipfile.ZipFile, tmp_path: Path) -> None:
    """Unpacked alone (as pip installs it), the package finds its prompts and taxonomies there, not in the
    repository: nothing guesses the project root from a module's location."""
    site = tmp_path / "site"
    wheel.extractall(site)
    code = (
        "from server.resources import builtin_prompts_dir, builtin_taxonomies_dir, migrations_dir;"
        "from server.taxonomy import load_taxonomy;"
        "print(builtin_prompts_dir()); print(builtin_taxonomies_dir()); print(migrations_dir());"
        "print(load_taxonomy('tickets').key)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert [Path(p) for p in out[:3]] == [
        site / "prompts",
        site / "server" / "taxonomies",
        site / "server" / "store" / "migrations",
    ]
    assert out[3].startswith("tickets")
