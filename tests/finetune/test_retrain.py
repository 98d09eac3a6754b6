"""`triage retrain` through the real CLI (in-process): a copy of the registry with the shipped active adapter,
a real SQLite feedback store with keys of each role, a tiny training configuration (4 rows, 1 step of 1
example, 32-token bodies) and a 1-ticket gate set. The trigger counts only corrections the feedback filter
lets through; a candidate is trained, calibrated and gated against the active adapter; it is promoted only
with --promote and a "yes"; every run is a `retrain` audit event."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from server.cli import app
from server.registry import Registry
from server.store import audit
from server.store.db import make_sessionmaker, open_store
from tests.conftest import ACTIVE_ADAPTER
from tests.finetune.feedback_store import FeedbackStore, make_store

ROOT = Path(__file__).resolve().parents[2]
cli = CliRunner()

# The model test trains three candidates, each calibrated and gated: every row, step and token counts three
# times. 4 rows leave 1 held out (calibration still fits all three fields); the feedback always trains.
STEPS = 1
TINY = {
    "data": {"max_rows": 4, "heldout_fraction": 0.25},
    "train": {"max_steps": STEPS, "batch_size": 1, "max_length": 640, "checkpoint_every": 0},
}
GATE_ROWS = 1
# Every tolerance wide open: the tiny candidate passes, so what is tested is what happens after a "yes".
LENIENT = {
    "min_category_accuracy_delta": 1.0,
    "max_accuracy_drop": 1.0,
    "max_per_label_drop": 1.0,
    "max_language_drop": 1.0,
    "min_language_support": 1,
    "max_invalid_json": 100,
    "max_ece_increase": 1.0,
    "classical_margin": -1.0,
}
# At most -1 answers without valid JSON: no candidate can pass.
IMPOSSIBLE = {**LENIENT, "max_invalid_json": -1}


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.store: FeedbackStore = make_store(tmp)
        models = tmp / "models"
        shutil.copytree(ROOT / "models/adapters" / ACTIVE_ADAPTER, models / "adapters" / ACTIVE_ADAPTER)
        self.index = models / "registry.json"
        self.index.write_text(json.dumps({"active": ACTIVE_ADAPTER, "history": []}))
        self.registry = Registry(self.index)
        self.server_config = tmp / "triage.yaml"
        self.server_config.write_text(
            yaml.safe_dump(
                {
                    "database_url": self.store.url,
                    "storage": {"data_key_file": str(self.store.storage.data_key_file)},
                    "model": {"registry": str(self.index)},
                    "engine": {"max_string_tokens": 4, "max_reasoning_tokens": 6, "max_batch_size": 8},
                    # Shorter prompts for training, calibration and both sides of the gate alike.
                    "prompt": {"max_body_tokens": 32},
                }
            )
        )
        self.eval_data = tmp / "gate.csv"
        with open(ROOT / "data/tickets/golden.csv", newline="", encoding="utf-8") as src:
            rows = list(csv.DictReader(src))[:GATE_ROWS]
        with open(self.eval_data, "w", newline="", encoding="utf-8") as dst:
            writer = csv.DictWriter(dst, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        self.rules: dict[str, Path] = {}
        for name, rules in (("lenient", LENIENT), ("impossible", IMPOSSIBLE)):
            self.rules[name] = tmp / f"{name}.yaml"
            self.rules[name].write_text(yaml.safe_dump(rules))
        self.config = tmp / "retrain.yaml"
        self.config.write_text(
            yaml.safe_dump({"finetune": TINY, "eval_data": str(self.eval_data), "report_dir": str(tmp / "reports")})
        )

    def retrain(self, *args: str, code: int = 0) -> tuple[str, dict[str, Any]]:
        r = cli.invoke(
            app,
            ["retrain", "--config", str(self.config), "--server-config", str(self.server_config), "--json", *args],
        )
        assert r.exit_code == code, r.output
        return r.output, json.loads(r.stdout.strip().splitlines()[-1])

    def audit_events(self, action: str) -> list[tuple[str | None, dict[str, Any]]]:
        engine = open_store(self.store.url, self.store.storage, create_key=False)
        try:
            with make_sessionmaker(engine)() as s:
                return [(e.target, e.detail or {}) for e in audit.events(s, actions=[action])]
        finally:
            engine.dispose()

    def adapters(self) -> set[str]:
        return {e.name for e in self.registry.list()}


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    s = Setup(tmp_path)
    # The environment outranks the settings file; tests/conftest.py points it at a throwaway keyring.
    monkeypatch.setenv("TRIAGE_STORAGE__DATA_KEY_FILE", str(s.store.storage.data_key_file))
    s.store.add("T-1", {"category": "Billing"}, key="rita")  # review key: trains
    s.store.add("T-2", {"priority": "High"}, key="ada")  # admin key: trains
    s.store.add("T-3", {"category": "Sales"}, key="clerk")  # classify-only key: refused by the filter
    return s


def test_fewer_new_corrections_than_if_new_does_nothing_and_says_so(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("finetune.train.main", lambda *a, **k: pytest.fail("trained although too few corrections"))
    index_before = setup.index.read_bytes()
    # Three corrections are stored, but the classify-only key's does not count: 2 < 3.
    out, detail = setup.retrain("--if-new", "3")
    assert "2 new correction(s)" in out and "fewer than --if-new 3: nothing to do" in out
    assert detail["verdict"] == "skipped" and detail["new_corrections"] == 2 and detail["candidate"] is None
    assert setup.index.read_bytes() == index_before and setup.adapters() == {ACTIVE_ADAPTER}
    [(target, event)] = setup.audit_events("retrain")
    assert target is None and event["verdict"] == "skipped" and event["new_corrections"] == 2
    assert event["active"] == ACTIVE_ADAPTER and event["since_feedback_id"] is None  # v1 was trained without feedback


def test_only_corrections_after_the_active_snapshot_count(setup: Setup) -> None:
    # As if the active adapter had been trained on feedback up to id 1, taken from another database.
    active = setup.registry.adapters_dir / ACTIVE_ADAPTER
    setup.registry.update_manifest(
        active,
        lambda m: m["data"].__setitem__("feedback", {"database": "sqlite:///elsewhere.db", "max_feedback_id": 1}),
    )
    out, detail = setup.retrain("--if-new", "2")
    # id 2 (admin) counts; id 1 is in the snapshot; id 3 (classify key) is refused by the filter.
    assert detail["verdict"] == "skipped" and detail["new_corrections"] == 1 and detail["since_feedback_id"] == 1
    assert "snapshot was taken from sqlite:///elsewhere.db" in out


def test_bad_retrain_config_is_refused_before_anything_runs(setup: Setup) -> None:
    setup.config.write_text(yaml.safe_dump({"if_new": "many", "promte": True}))
    r = cli.invoke(app, ["retrain", "--config", str(setup.config), "--server-config", str(setup.server_config)])
    assert r.exit_code == 2
    assert "if_new: Input should be a valid integer" in r.output and "promte: unknown key" in r.output
    setup.config.write_text(yaml.safe_dump({"finetune": {"train": {"max_stepz": 2}}}))
    r = cli.invoke(app, ["retrain", "--config", str(setup.config), "--server-config", str(setup.server_config)])
    assert r.exit_code == 2 and "train.max_stepz: unknown key" in r.output
    assert setup.audit_events("retrain") == [] and setup.adapters() == {ACTIVE_ADAPTER}


def test_a_run_that_fails_is_audited_as_failed_and_leaves_no_adapter(setup: Setup) -> None:
    # The candidate's training data cannot be read: the run fails after it started, before any model loads.
    out, detail = setup.retrain("--set", "data.files=[no/such/file.csv]", code=1)
    assert "retrain failed: DataError" in out and "no/such/file.csv: file not found" in out
    assert detail["verdict"] == "failed" and detail["gate"] is None
    assert setup.adapters() == {ACTIVE_ADAPTER} and not (setup.registry.adapters_dir / detail["candidate"]).exists()
    [(target, event)] = setup.audit_events("retrain")
    assert target == detail["candidate"] and event["verdict"] == "failed" and "DataError" in event["error"]


@pytest.mark.model
def test_retrain_gates_against_the_active_adapter_and_promotes_only_on_yes_when_asked(setup: Setup) -> None:
    index_before = setup.index.read_bytes()

    # 1. A "yes" without --promote: the candidate is registered with its verdict, the registry is untouched.
    out, detail = setup.retrain("--if-new", "2", "--rules", str(setup.rules["lenient"]))
    first = detail["candidate"]
    assert re.fullmatch(rf"{ACTIVE_ADAPTER}-retrain-\d{{8}}T\d{{6}}", first), first
    assert detail["verdict"] == "kept" and detail["new_corrections"] == 2
    assert detail["gate"]["verdict"] == "yes" and detail["gate"]["baseline"] == ACTIVE_ADAPTER
    assert "automatic promotion is off" in out
    assert setup.index.read_bytes() == index_before
    entry = setup.registry.validate(first)  # registered: files and checksums as its manifest says
    m = entry.manifest
    assert (
        m.gate is not None
        and m.gate.verdict == "yes"
        and m.gate.baseline
        == {
            "kind": "adapter",
            "name": ACTIVE_ADAPTER,
            "path": str(setup.registry.adapters_dir / ACTIVE_ADAPTER),
        }
    )
    assert m.calibration is not None and set(m.calibration.temperatures or {}) == {"category", "priority", "sentiment"}
    data = m.get("data")
    # The active adapter's base data (its recorded config's file) plus the feedback the filter let through.
    assert [s["path"] for s in data["sources"]] == ["data/tickets/train.csv"]
    assert data["init_adapter"]["name"] == ACTIVE_ADAPTER
    snapshot = data["feedback"]
    assert snapshot["max_feedback_id"] == 3 and snapshot["rows_used"] == 2
    assert snapshot["rows_skipped_filter"]["role"] == 1
    assert m.get("training")["steps"] == STEPS
    assert (Path(detail["gate"]["report"]) / "gate.json").is_file()

    # 2. --promote, but a gate the candidate cannot pass: "no" is never promoted.
    out, detail = setup.retrain("--name", "cand-no", "--promote", "--rules", str(setup.rules["impossible"]))
    assert detail["verdict"] == "kept" and detail["gate"]["verdict"] == "no"
    assert detail["gate"]["failed_checks"] == ["invalid JSON"] and "not promoted" in out
    assert setup.index.read_bytes() == index_before and setup.registry.active == ACTIVE_ADAPTER
    assert setup.registry.get("cand-no").manifest.gate.verdict == "no"  # type: ignore[union-attr]

    # 3. --promote and a "yes": promoted, never forced.
    out, detail = setup.retrain("--name", "cand-yes", "--promote", "--rules", str(setup.rules["lenient"]))
    assert detail["verdict"] == "promoted" and detail["gate"]["verdict"] == "yes"
    assert setup.registry.active == "cand-yes"
    last = setup.registry.history[-1]
    assert (last["action"], last["name"], last["previous"], last["forced"]) == (
        "promote",
        "cand-yes",
        ACTIVE_ADAPTER,
        False,
    )
    assert setup.adapters() == {ACTIVE_ADAPTER, first, "cand-no", "cand-yes"}

    # 4. The promoted adapter's snapshot covers every correction: nothing new, nothing to do.
    out, detail = setup.retrain("--if-new", "1")
    assert detail["verdict"] == "skipped" and detail["new_corrections"] == 0 and detail["since_feedback_id"] == 3

    events = setup.audit_events("retrain")
    assert [(t, e["verdict"], e["gate"]["verdict"] if e["gate"] else None) for t, e in events] == [
        (first, "kept", "yes"),
        ("cand-no", "kept", "no"),
        ("cand-yes", "promoted", "yes"),
        (None, "skipped", None),
    ]
    assert all(e["new_corrections"] == n for (_, e), n in zip(events, (2, 2, 2, 0), strict=True))
    assert events[0][1]["active"] == ACTIVE_ADAPTER and events[3][1]["active"] == "cand-yes"
    assert setup.audit_events("promote") == [
        ("cand-yes", {"previous": ACTIVE_ADAPTER, "forced": False, "reason": "triage retrain: gate yes"})
    ]


CRONJOB = ROOT / "deploy/k8s/retrain-cronjob.yaml"


def test_cronjob_runs_the_count_trigger_without_overlap_and_its_config_is_valid(tmp_path: Path) -> None:
    from finetune.retrain import load_retrain_config

    config_map, cron = list(yaml.safe_load_all(CRONJOB.read_text()))
    assert (config_map["kind"], cron["kind"], cron["apiVersion"]) == ("ConfigMap", "CronJob", "batch/v1")
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and len(spec["schedule"].split()) == 5
    [container] = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    argv = container["command"] + container["args"]
    assert argv[:4] == ["triage", "retrain", "--if-new", "200"] and "--promote" not in argv  # promotion is opt-in
    # The config the ConfigMap mounts is a valid retrain config (the same validation the command applies).
    mounted = tmp_path / "retrain.yaml"
    mounted.write_text(config_map["data"]["retrain.yaml"])
    cfg = load_retrain_config(mounted)
    assert cfg.if_new == 200 and cfg.promote is False and cfg.finetune == {"train.epochs": 1}


def test_cronjob_is_valid_against_the_kubernetes_schemas() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for resource in yaml.safe_load_all(CRONJOB.read_text()):
        kubernetes_validate.validate(resource, "1.30.0", strict=True)
