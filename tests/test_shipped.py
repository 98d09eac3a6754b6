"""What the repository ships: the pins the suites rely on match the registry on disk."""

from __future__ import annotations

import json

from tests.conftest import ACTIVE_ADAPTER, ACTIVE_PROMPT, ROOT


def test_pinned_active_adapter_is_the_shipped_one() -> None:
    registry = json.loads((ROOT / "models" / "registry.json").read_text())
    manifest = json.loads((ROOT / "models" / "adapters" / ACTIVE_ADAPTER / "manifest.json").read_text())
    assert registry["active"] == ACTIVE_ADAPTER, "the registry's active adapter moved: update tests/conftest.py"
    assert manifest["prompt_version"] == ACTIVE_PROMPT
