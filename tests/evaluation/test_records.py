"""The typed records over the JSON files: manifests and eval summaries must round-trip unchanged (they
are committed to git and read by older code) and refuse what they cannot be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.records import EvalSummary
from server.registry import MANIFEST, AdapterEntry, AdapterManifest, Registry, RegistryError, read_manifest

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = sorted((ROOT / "models" / "adapters").glob("*/manifest.json"))


def dumped(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"  # as write_json_atomic writes


@pytest.mark.parametrize("path", ADAPTERS, ids=[p.parent.name for p in ADAPTERS])
def test_every_committed_manifest_round_trips_byte_for_byte(path: Path) -> None:
    manifest = read_manifest(path.parent)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert manifest.to_json() == raw
    assert list(manifest.to_json()) == list(raw), "key order is kept"
    if dumped(raw) == path.read_text(encoding="utf-8"):  # files written by write_json_atomic
        assert dumped(manifest.to_json()) == path.read_text(encoding="utf-8")


def test_committed_manifests_are_typed() -> None:
    assert ADAPTERS, "no adapters under models/adapters"
    for path in ADAPTERS:
        m = read_manifest(path.parent)
        assert isinstance(m.adapter_files, dict) and m.adapter_files
        for summary in (m.evals or {}).values():
            assert isinstance(summary, EvalSummary) and summary.n and summary.metric("category_accuracy") is not None


def test_an_edit_keeps_everything_else(tmp_path: Path) -> None:
    source = next(p for p in ADAPTERS if "evals" in json.loads(p.read_text()))
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / MANIFEST).write_text(source.read_text())
    before = json.loads(source.read_text())

    def edit(m: AdapterManifest) -> None:
        evals = dict(m.evals or {})
        evals["new"] = EvalSummary(n=3)
        m.set("evals", evals)

    Registry(tmp_path / "registry.json", tmp_path).edit_manifest(folder, edit)
    after = json.loads((folder / MANIFEST).read_text())
    assert after["evals"].pop("new") == {"n": 3}, "only what was set is written"
    assert after == before and list(after) == list(before)


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ([1, 2], "must be a JSON object"),
        ({"adapter_files": ["a.safetensors"]}, "adapter_files"),
        ({"evals": {"sha": {"n": "many"}}}, "evals.sha.n"),
        ({"gate": "yes"}, "gate"),
        ({"calibration": {"temperatures": {"category": "hot"}}}, "calibration.temperatures.category"),
    ],
)
def test_a_malformed_manifest_is_refused_with_the_key_named(tmp_path: Path, manifest: object, problem: str) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(RegistryError, match="manifest") as info:
        read_manifest(folder)
    assert problem in str(info.value) and str(folder / MANIFEST) in str(info.value)
    registry = Registry(tmp_path / "registry.json", tmp_path)
    (listed,) = registry.list()
    assert listed.error is not None and problem in listed.error, "listed as broken, not hidden"
    with pytest.raises(RegistryError):
        registry.validate("bad")


def test_an_edit_that_breaks_the_manifest_is_not_written(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / MANIFEST).write_text(json.dumps({"name": "a"}))
    with pytest.raises(RegistryError, match="gate"):
        Registry(tmp_path / "registry.json", tmp_path).update_manifest(folder, lambda m: m.update(gate=3))
    assert json.loads((folder / MANIFEST).read_text()) == {"name": "a"}


def test_entries_built_from_json_objects_are_parsed() -> None:
    entry = AdapterEntry("x", Path("/nowhere"), {"kind": "head", "gate": {"verdict": "yes"}, "extra": [1]})  # type: ignore[arg-type]
    assert isinstance(entry.manifest, AdapterManifest) and not entry.has_lora
    assert entry.manifest.gate is not None and entry.manifest.gate.verdict == "yes"
    assert entry.manifest["extra"] == [1] and entry.manifest.get("missing") is None


def test_eval_summary_keeps_numbers_and_order() -> None:
    raw = {"n": 2, "category_accuracy": 1, "tickets_per_s": 3, "per_label": {}, "model": {"base": "b"}}
    s = EvalSummary.from_json(raw)
    assert s.to_json() == raw and list(s.to_json()) == list(raw)
    assert isinstance(s.to_json()["tickets_per_s"], int), "an int is not turned into a float"
    assert s.metric("category_accuracy") == 1.0 and s.metric("n") == 2.0 and s.metric("missing") is None
    s.set("data_sha256", "abc")
    assert list(s.to_json())[-1] == "data_sha256", "a new key goes last, as in a dict"
    with pytest.raises(ValueError):
        EvalSummary.from_json({"per_language": "en"})


def test_eval_summary_reads_per_label_from_a_report_fields_block() -> None:
    labels = {"Billing": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}}
    assert EvalSummary.from_json({"per_label": {"category": labels}}).labels_of("category") == labels
    assert EvalSummary.from_json({"fields": {"category": {"per_label": labels}}}).labels_of("category") == labels
    assert EvalSummary.from_json({}).labels_of("category") is None
    s = EvalSummary.from_json({"category_accuracy": 0.5, "in_scope_accuracy": 0.4, "category_ece": 0.1})
    assert s.accuracy_fields() == ["category"]
    assert s.headline(("_accuracy",)) == {"category_accuracy": 0.5, "in_scope_accuracy": 0.4}


def test_the_threshold_rule() -> None:
    from server.config import RoutingSettings
    from server.routing.thresholds import field_threshold, unsure_fields

    routing = RoutingSettings(confidence_threshold=0.6, field_thresholds={"priority": 0.3})
    assert field_threshold(routing, "priority") == 0.3 and field_threshold(routing, "category") == 0.6
    conf = {"category": 0.59, "priority": 0.31, "sentiment": None, "other": 0.6}
    assert unsure_fields(routing, conf) == ["category", "sentiment"], "under the bar or no confidence at all"
