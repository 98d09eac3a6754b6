"""prompts/CHANGELOG.md has an entry for every prompt version that can be served: each
prompts/<kind>/<version>.jinja needs a `## <kind>/<version> (date)` heading with at least one line under it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
HEADING = re.compile(r"^## (?P<id>[\w.-]+/[\w.-]+) \((?P<date>\d{4}-\d{2}-\d{2})\)\s*$")


def served_versions(root: Path) -> set[str]:
    return {f"{p.parent.name}/{p.stem}" for p in root.glob("*/*.jinja")}


def changelog_entries(text: str) -> dict[str, list[str]]:
    """Each `## kind/version (date)` heading and the non-empty lines under it."""
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            match = HEADING.match(line)
            assert match, f"CHANGELOG heading not of the form '## kind/version (YYYY-MM-DD)': {line!r}"
            assert match["id"] not in entries, f"two CHANGELOG entries for {match['id']}"
            current = entries[match["id"]] = []
        elif current is not None and line.strip():
            current.append(line)
    return entries


def missing_entries(root: Path) -> list[str]:
    entries = changelog_entries((root / "CHANGELOG.md").read_text(encoding="utf-8"))
    return sorted(v for v in served_versions(root) if not entries.get(v))


def test_every_prompt_version_has_a_changelog_entry() -> None:
    assert {"classify/v1", "classify/v2", "review/v1", "review/v2"} <= served_versions(PROMPTS)
    assert missing_entries(PROMPTS) == []


def test_entries_name_only_versions_that_exist() -> None:
    # A typo in a heading (`classify/2`) would leave the real version undocumented while looking covered.
    entries = changelog_entries((PROMPTS / "CHANGELOG.md").read_text(encoding="utf-8"))
    assert set(entries) <= served_versions(PROMPTS)


def test_a_new_version_without_an_entry_is_caught(tmp_path: Path) -> None:
    for kind in ("classify", "review"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "v1.jinja").write_text("x")
    (tmp_path / "classify" / "v3.jinja").write_text("x")
    (tmp_path / "review" / "v2.jinja").write_text("x")
    (tmp_path / "CHANGELOG.md").write_text(
        "# Prompt changelog\n\n## classify/v1 (2026-01-01)\n- first\n\n## review/v1 (2026-01-01)\n- first\n\n"
        "## review/v2 (2026-01-02)\n\n"  # a heading with nothing under it is no entry
    )
    assert missing_entries(tmp_path) == ["classify/v3", "review/v2"]


def test_malformed_heading_is_refused() -> None:
    with pytest.raises(AssertionError, match="heading not of the form"):
        changelog_entries("## classify/v4\n- no date\n")
