"""A/B tests: the deterministic split (stability, ratio over 10,000 ids), the settings it refuses, the
profiles variants build, and over the in-process API: each variant's own engine (adapter and prompt)
answers its tickets, and the variant is in the response and stored with the result."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from server.ab import AbSplit, bucket, variant_profiles
from server.api.app import create_server, profile_settings
from server.config import AbSettings, load_settings
from server.engines.base import EngineError, EngineOutput, ReviewInput
from server.prompts import TicketInput
from server.store.db import make_sessionmaker
from server.store.models import Classification
from tests.api.conftest import api_settings, open_db
from tests.routing.doubles import OUTPUT, ScriptedEngine


def _split(*weights: float, salt: str = "s1") -> AbSplit:
    variants = [{"name": f"v{i}", "weight": w} for i, w in enumerate(weights)]
    return AbSplit(AbSettings(enabled=True, salt=salt, variants=variants))  # type: ignore[arg-type]


def test_assignment_is_stable_and_follows_the_weights() -> None:
    ids = [f"T-{i}" for i in range(10_000)]
    split = _split(7, 3)
    first = [split.assign(t).name for t in ids]
    # Stable: the same id gets the same variant from the same split, and from a new one (another process).
    assert first == [split.assign(t).name for t in ids] == [_split(7, 3).assign(t).name for t in ids]
    counts = Counter(first)
    # 70/30: the binomial standard deviation over 10,000 is 0.0046; 0.02 is over 4 of them.
    assert abs(counts["v0"] / 10_000 - 0.7) < 0.02 and abs(counts["v1"] / 10_000 - 0.3) < 0.02
    # Three-way and equal weights.
    three = Counter(_split(1, 1, 1).assign(t).name for t in ids)
    assert all(abs(three[f"v{i}"] / 10_000 - 1 / 3) < 0.02 for i in range(3))
    # Another salt reshuffles (about half of the ids move), the same weights hold.
    other = [_split(7, 3, salt="s2").assign(t).name for t in ids]
    moved = sum(a != b for a, b in zip(first, other, strict=True))
    assert 0.3 < moved / 10_000 < 0.5
    assert 0 <= bucket("s", "x") < 1 and bucket("s", "x") == bucket("s", "x") != bucket("s", "y")


def test_settings_refuse_broken_tests() -> None:
    with pytest.raises(ValidationError, match="at least two variants"):
        load_settings(ab={"enabled": True, "variants": [{"name": "a"}]})
    with pytest.raises(ValidationError, match="duplicate"):
        load_settings(ab={"enabled": True, "variants": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ValidationError, match="not both"):
        load_settings(
            ab={"enabled": True, "variants": [{"name": "a"}, {"name": "b", "engine": "default", "adapter": "x"}]}
        )
    with pytest.raises(ValidationError, match="not 'default' nor under routing.engines"):
        load_settings(ab={"enabled": True, "variants": [{"name": "a"}, {"name": "b", "engine": "small"}]})
    with pytest.raises(ValidationError, match="weight"):
        load_settings(ab={"enabled": True, "variants": [{"name": "a", "weight": 0}, {"name": "b"}]})
    with pytest.raises(ValidationError, match="name"):
        load_settings(ab={"enabled": True, "variants": [{"name": "a b"}, {"name": "b"}]})
    # Named profiles are fine when they exist.
    ok = load_settings(
        routing={"engines": {"small": {"adapter": "x"}}},
        ab={"enabled": True, "variants": [{"name": "a"}, {"name": "b", "engine": "small"}]},
    )
    assert [v.profile for v in AbSplit(ok.ab).variants] == [None, "small"]


def test_variant_profiles_carry_the_adapter_and_the_prompt() -> None:
    settings = load_settings(
        model={"adapter": "tickets-smollm2-v1"},
        ab={
            "enabled": True,
            "variants": [
                {"name": "control"},
                {"name": "prompt", "prompt_version": "v1"},
                {"name": "adapter", "adapter": "other-adapter"},
            ],
        },
    )
    profiles = variant_profiles(settings)
    assert set(profiles) == {"ab:prompt", "ab:adapter"}
    prompt_only = profile_settings(settings, profiles["ab:prompt"])
    # A prompt-only variant keeps the default adapter and pins the prompt (explicitly: the adapter's trained
    # prompt version does not override it).
    assert prompt_only.model.adapter == "tickets-smollm2-v1" and prompt_only.prompt.version == "v1"
    assert "version" in prompt_only.prompt.model_fields_set
    adapter_only = profile_settings(settings, profiles["ab:adapter"])
    assert adapter_only.model.adapter == "other-adapter" and "version" not in adapter_only.prompt.model_fields_set
    assert variant_profiles(load_settings()) == {}


class PromptedEngine(ScriptedEngine):
    """The ScriptedEngine answering with its own prompt version, as an engine built with another prompt does."""

    def __init__(self, name: str, *, adapter: str | None, prompt: str, output: dict[str, Any]) -> None:
        super().__init__(name, adapter=adapter)
        self.prompt, self.output = prompt, output

    async def classify(self, tickets: Sequence[TicketInput | ReviewInput]) -> list[EngineOutput | EngineError]:
        out = await super().classify(tickets)
        return [
            replace(r, prompt_version=self.prompt, output=copy.deepcopy(self.output))
            if isinstance(r, EngineOutput)
            else r
            for r in out
        ]

    @property
    def prompt_version(self) -> str:
        return self.prompt


AB = {
    "enabled": True,
    "salt": "test",
    "variants": [
        {"name": "control", "weight": 1},
        {"name": "candidate", "weight": 1, "adapter": "adapter-b", "prompt_version": "v2"},
    ],
}


def test_each_variant_answers_with_its_engine_and_is_stored(tmp_path: Path) -> None:
    control = PromptedEngine("scripted", adapter="adapter-a", prompt="classify/v1", output=OUTPUT)
    candidate = PromptedEngine(
        "scripted", adapter="adapter-b", prompt="classify/v2", output={**OUTPUT, "category": "Technical"}
    )
    split = AbSplit(api_settings(tmp_path, ab=AB).ab)
    ids = [f"T-{i}" for i in range(40)]
    expected = {t: split.assign(t).name for t in ids}
    assert set(expected.values()) == {"control", "candidate"}

    app = create_server(api_settings(tmp_path, ab=AB), engine=control, engines={"ab:candidate": candidate})
    with TestClient(app) as client:
        bodies = {}
        for t in ids:
            r = client.post("/v1/classify", json={"ticket_id": t, "subject": f"s {t}", "body": "b"})
            assert r.status_code == 200, r.text
            bodies[t] = r.json()
        # A ticket without an id gets one first, and the variant of that id.
        r = client.post("/v1/classify", json={"subject": "no id", "body": "b"})
        generated = r.json()
        assert generated["variant"] == split.assign(generated["ticket_id"]).name
        # The same ticket again: the same variant.
        again = client.post("/v1/classify", json={"ticket_id": "T-0", "subject": "other text", "body": "b"}).json()
        assert again["variant"] == expected["T-0"]
        stored = client.get(f"/v1/results/{bodies['T-1']['request_id']}").json()
        assert stored["variant"] == expected["T-1"]

    for t, body in bodies.items():
        assert body["variant"] == expected[t]
        if expected[t] == "candidate":
            assert body["model"]["adapter"] == "adapter-b" and body["prompt_version"] == "classify/v2"
            assert body["category"] == "Technical"
        else:
            assert body["model"]["adapter"] == "adapter-a" and body["prompt_version"] == "classify/v1"
            assert body["category"] == "Billing"
    # Each engine saw exactly its variant's tickets.
    asked_candidate = {item.subject for call in candidate.calls for item in call if isinstance(item, TicketInput)}
    assert asked_candidate == {f"s {t}" for t in ids if expected[t] == "candidate"} | (
        {"no id"} if generated["variant"] == "candidate" else set()
    ) | ({"other text"} if expected["T-0"] == "candidate" else set())

    db = open_db(tmp_path)
    try:
        with make_sessionmaker(db)() as session:
            rows = session.execute(
                select(Classification.ticket_id, Classification.variant, Classification.prompt_version)
            ).all()
    finally:
        db.dispose()
    by_ticket = {r[0]: (r[1], r[2]) for r in rows}
    for t in ids:
        assert by_ticket[t][0] == expected[t]
        assert by_ticket[t][1] == ("classify/v2" if expected[t] == "candidate" else "classify/v1")


def test_without_an_ab_test_the_variant_is_null(tmp_path: Path) -> None:
    with TestClient(create_server(api_settings(tmp_path), engine=ScriptedEngine())) as client:
        r = client.post("/v1/classify", json={"ticket_id": "T-1", "subject": "s", "body": "b"})
        assert r.status_code == 200 and r.json()["variant"] is None
        assert client.get(f"/v1/results/{r.json()['request_id']}").json()["variant"] is None
