"""The model registry (models/registry.json + models/adapters/<name>/) and its CLI, without any model."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from server.config import ModelSettings
from server.registry import AdapterEntry, Registry, RegistryError, resolve_adapter

# -- fixtures -------------------------------------------------------------------------------------


def make_adapter(adapters: Path, name: str, verdict: str | None = "yes", **manifest_extra) -> Path:
    """A tiny but real adapter folder: safetensors weights, adapter_config.json, manifest with sha256s."""
    folder = adapters / name
    folder.mkdir(parents=True)
    save_file(
        {"base_model.model.layers.0.q_proj.lora_A.weight": np.ones((2, 4), dtype=np.float32)},
        str(folder / "adapter_model.safetensors"),
    )
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    files = {
        f: hashlib.sha256((folder / f).read_bytes()).hexdigest()
        for f in ("adapter_config.json", "adapter_model.safetensors")
    }
    manifest = {
        "name": name,
        "base_model": {"path": "models/base/smollm2-135m-instruct"},
        "adapter_files": files,
        "prompt_version": "v2",
        "taxonomy": "tickets",
        "created_at": "2025-01-01T00:00:00+00:00",
        "data": {"train_rows": 1234, "heldout_rows": 100},
        "training": {"examples": 1234, "steps": 10},
        "calibration": {
            "temperatures": {"category": 1.3},
            "ece_before": {"category": 0.2},
            "ece_after": {"category": 0.042},
        },
        "evals": {},
        **manifest_extra,
    }
    if verdict is not None:
        manifest["gate"] = {
            "verdict": verdict,
            "data": "abc",
            "baseline": None,
            "checks": [],
            "at": "2025-01-01T00:00:00+00:00",
        }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def reg(tmp_path) -> Registry:
    models = tmp_path / "models"
    for name in ("a", "b", "c"):
        make_adapter(models / "adapters", name)
    make_adapter(models / "adapters", "ungated", verdict="no")
    return Registry(models / "registry.json")


def index(reg: Registry) -> dict:
    return json.loads(reg.index_path.read_text())


# -- Registry -------------------------------------------------------------------------------------


def test_list_and_get(reg):
    (reg.adapters_dir / "not-an-adapter").mkdir()  # no manifest: not listed
    assert [e.name for e in reg.list()] == ["a", "b", "c", "ungated"]
    e = reg.get("a")
    assert e.path == reg.adapters_dir / "a" and e.manifest["prompt_version"] == "v2"
    assert e.base_model_path is not None and e.base_model_path.is_absolute()
    with pytest.raises(RegistryError, match="not found"):
        reg.get("zzz")
    with pytest.raises(RegistryError, match="invalid adapter name"):
        reg.get("../a")
    assert reg.active is None


def test_promote_writes_history(reg):
    reg.promote("a", user="alice")
    assert reg.active == "a"
    (event,) = index(reg)["history"]
    assert event["action"] == "promote" and event["name"] == "a" and event["previous"] is None
    assert event["forced"] is False and event["reason"] is None and event["user"] == "alice"
    assert event["at"].endswith("+00:00")
    reg.promote("b")
    assert reg.active == "b" and index(reg)["history"][-1]["previous"] == "a"
    assert not list(reg.index_path.parent.glob(".registry.json.*.tmp")), "temp file left behind"


def test_promote_refused_when_gate_says_no(reg):
    reg.promote("a")
    with pytest.raises(RegistryError, match="gate verdict is no"):
        reg.promote("ungated")
    with pytest.raises(RegistryError, match="reason"):
        reg.promote("ungated", force=True)
    with pytest.raises(RegistryError, match="reason"):
        reg.promote("ungated", force=True, reason="   ")
    assert reg.active == "a" and len(index(reg)["history"]) == 1


def test_promote_never_gated_is_refused(reg):
    make_adapter(reg.adapters_dir, "fresh", verdict=None)
    with pytest.raises(RegistryError, match="never gated"):
        reg.promote("fresh")


def test_forced_promote_is_recorded(reg):
    reg.promote("a")
    reg.promote("ungated", force=True, reason="hotfix for billing outage", user="bob")
    assert reg.active == "ungated"
    event = index(reg)["history"][-1]
    assert event["forced"] is True and event["reason"] == "hotfix for billing outage" and event["user"] == "bob"


def _break_weights(folder: Path) -> None:
    (folder / "adapter_model.safetensors").write_bytes(b"\xff" * 64)


def _tamper_config(folder: Path) -> None:
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: (f / "adapter_model.safetensors").unlink(), "adapter_model.safetensors missing"),
        (_break_weights, "not a readable safetensors"),
        (lambda f: (f / "adapter_config.json").write_text("{not json"), "not valid JSON"),
        (_tamper_config, "sha256 of adapter_config.json"),
    ],
    ids=["missing-weights", "corrupt-safetensors", "bad-config-json", "sha-mismatch"],
)
def test_promote_of_broken_adapter_fails_and_keeps_active(reg, breakage, message):
    reg.promote("a")
    before = reg.index_path.read_bytes()
    breakage(reg.adapters_dir / "b")
    with pytest.raises(RegistryError, match=message):
        reg.promote("b")
    assert reg.active == "a"
    assert reg.index_path.read_bytes() == before


def test_promote_missing_folder_fails(reg):
    reg.promote("a")
    with pytest.raises(RegistryError, match="not found"):
        reg.promote("nope")
    assert reg.active == "a"


def test_sha_mismatch_in_weights(reg):
    folder = reg.adapters_dir / "b"
    save_file(
        {"x": np.zeros((2, 2), dtype=np.float32)}, str(folder / "adapter_model.safetensors")
    )  # valid file, other bytes
    with pytest.raises(RegistryError, match="sha256 of adapter_model.safetensors"):
        reg.validate("b")


def test_rollback_walks_back(reg):
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    reg.promote("a")
    reg.promote("b")
    reg.promote("c")
    assert reg.rollback(user="carol") == "b"
    assert reg.active == "b"
    event = index(reg)["history"][-1]
    assert event == event | {"action": "rollback", "name": "b", "previous": "c", "user": "carol", "forced": False}
    assert reg.rollback() == "a"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        reg.rollback()
    assert reg.active == "a"


def test_rollback_refuses_a_broken_target(reg):
    reg.promote("a")
    reg.promote("b")
    _break_weights(reg.adapters_dir / "a")
    with pytest.raises(RegistryError, match="safetensors"):
        reg.rollback()
    assert reg.active == "b"


def test_promote_active_again_is_a_noop(reg):
    reg.promote("a")
    version = reg.version()
    reg.promote("a")
    assert reg.version() == version and len(index(reg)["history"]) == 1


def test_version_changes_on_promote(reg):
    v0 = reg.version()
    reg.promote("a")
    v1 = reg.version()
    reg.promote("b")
    v2 = reg.version()
    reg.rollback()
    assert len({v0, v1, v2, reg.version()}) == 4


def test_corrupt_index_is_an_error(reg):
    reg.index_path.write_text("{oops")
    with pytest.raises(RegistryError, match="registry.json"):
        reg.promote("a")


def test_update_manifest(reg):
    reg.update_manifest(reg.adapters_dir / "a", lambda m: m.setdefault("evals", {}).update({"sha": {"n": 3}}))
    assert reg.get("a").manifest.to_json()["evals"] == {"sha": {"n": 3}}


# -- resolve_adapter ------------------------------------------------------------------------------


def settings_for(reg: Registry, adapter: str | None) -> ModelSettings:
    return ModelSettings(adapter=adapter, registry=reg.index_path)


def test_resolve_registry_mode(reg):
    assert resolve_adapter(settings_for(reg, "registry")) is None  # no index yet
    reg.promote("b")
    entry = resolve_adapter(settings_for(reg, "registry"))
    assert isinstance(entry, AdapterEntry) and entry.name == "b" and entry.manifest["name"] == "b"


def test_resolve_name_path_none(reg, tmp_path):
    assert resolve_adapter(settings_for(reg, "c")).path == reg.adapters_dir / "c"
    by_path = resolve_adapter(settings_for(reg, str(reg.adapters_dir / "a")))
    assert by_path.name == "a" and by_path.manifest["name"] == "a"
    bare = tmp_path / "loose-adapter"
    bare.mkdir()
    loose = resolve_adapter(settings_for(reg, str(bare)))
    assert loose.name == "loose-adapter" and loose.manifest.to_json() == {}
    assert resolve_adapter(settings_for(reg, "none")) is None
    assert resolve_adapter(settings_for(reg, None)) is None
    with pytest.raises(RegistryError, match="neither"):
        resolve_adapter(settings_for(reg, "no-such-adapter"))


# -- CLI ------------------------------------------------------------------------------------------

cli_runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_triage_env(monkeypatch):
    """Settings read TRIAGE_* variables; the developer's own must not redirect these tests."""
    for key in [k for k in os.environ if k.startswith("TRIAGE_")]:
        monkeypatch.delenv(key)


@pytest.fixture
def cli(reg, tmp_path):
    """Invoke `triage ...` in-process with a config pointing at the tmp registry."""
    from server.cli import app

    config = tmp_path / "triage.yaml"
    # promote/rollback are audited: into a store (and data key) of the test's own.
    config.write_text(
        f"model:\n  registry: {reg.index_path}\ndatabase_url: sqlite:///{tmp_path / 'audit.db'}\n"
        f"storage:\n  data_key_file: {tmp_path / 'data.key'}\n"
    )

    def invoke(*args: str):
        return cli_runner.invoke(app, [*args, "--config", str(config)])

    return invoke


def test_cli_models_list(cli, reg):
    reg.promote("b")
    manifest_path = reg.adapters_dir / "b" / "manifest.json"
    m = json.loads(manifest_path.read_text())
    m["evals"] = {
        "old": {"category_accuracy": 0.5, "evaluated_at": "2025-01-01T00:00:00+00:00"},
        "new": {"category_accuracy": 0.875, "evaluated_at": "2025-02-01T00:00:00+00:00"},
    }
    manifest_path.write_text(json.dumps(m))
    r = cli("models", "list")
    assert r.exit_code == 0, r.output
    for text in (
        "a",
        "ungated",
        "smollm2-135m-instruct",
        "v2",
        "tickets",
        "1234",
        "0.875",
        "0.042",
        "yes",
        "no",
        "2025-01-01",
    ):
        assert text in r.output, (text, r.output)
    (b_line,) = [line for line in r.output.splitlines() if "0.875" in line]
    assert "*" in b_line


def test_cli_models_list_empty(tmp_path):
    from server.cli import app

    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  registry: {tmp_path / 'nothing' / 'registry.json'}\n")
    r = cli_runner.invoke(app, ["models", "list", "--config", str(config)])
    assert r.exit_code == 0 and "no adapters" in r.output


def test_cli_promote_and_rollback(cli, reg):
    r = cli("models", "promote", "a")
    assert r.exit_code == 0 and "promoted a (previous: none)" in r.output
    r = cli("models", "promote", "b")
    assert r.exit_code == 0 and "previous: a" in r.output
    r = cli("models", "rollback")
    assert r.exit_code == 0 and "rolled back to a (was b)" in r.output
    assert reg.active == "a"
    assert index(reg)["history"][-1]["user"], "the CLI names who ran it"


def test_cli_promote_refused_then_forced(cli, reg):
    r = cli("models", "promote", "ungated")
    assert r.exit_code == 1
    assert "error:" in r.output and "gate verdict is no" in r.output and "Traceback" not in r.output
    r = cli("models", "promote", "ungated", "--force")
    assert r.exit_code == 1 and "reason" in r.output
    r = cli("models", "promote", "ungated", "--force", "--reason", "known-good in staging")
    assert r.exit_code == 0, r.output
    assert "forced" in r.output and reg.active == "ungated"


def test_cli_errors_exit_1(cli, reg):
    r = cli("models", "promote", "missing")
    assert r.exit_code == 1 and "not found" in r.output
    _break_weights(reg.adapters_dir / "a")
    r = cli("models", "promote", "a")
    assert r.exit_code == 1 and "safetensors" in r.output
    r = cli("models", "rollback")
    assert r.exit_code == 1 and "nothing to roll back" in r.output
    assert reg.active is None


# -- eval with --model / --baseline (run_eval replaced: no model is loaded) -------------------------

DATA = "subject,body,category\nx,y,Billing\n"


def fake_summary(acc: float, recall_sales: float = 0.8) -> dict:
    labels = {
        lab: {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 5}
        for lab in ("Billing", "General", "Sales", "Technical")
    }
    labels["Sales"]["recall"] = recall_sales
    return {
        "n": 20,
        "invalid_json": 0,
        "category_accuracy": acc,
        "category_macro_f1": acc,
        "category_ece": 0.05,
        "model": {"base": "b", "adapter": None},
        "per_label": {"category": labels},
        "per_language": {"category": {"en": {"n": 20, "accuracy": acc}}},
    }


@pytest.fixture
def fake_eval(monkeypatch):
    """Stands in for server.evaluation.run: answers per adapter folder name and records each call."""
    calls: list[str | None] = []
    results = {
        "a": fake_summary(0.80),
        "b": fake_summary(0.85),
        "ungated": fake_summary(0.70, recall_sales=0.5),
        None: fake_summary(0.60),
    }

    def run_eval(settings, data, out_dir=None, limit=None, runner=None, console=None):
        adapter = settings.model.adapter
        name = None if adapter in (None, "none") else Path(adapter).name
        calls.append(name)
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        return json.loads(json.dumps(results[name]))

    def run_classical_eval(
        settings, data, train_files, label_sources, out_dir=None, limit=None, console=None, exclude_ids=None
    ):
        calls.append("classical")
        return fake_summary(0.5)

    module = types.ModuleType("server.evaluation.run")
    module.run_eval = run_eval
    module.run_classical_eval = run_classical_eval
    module.read_labelled_csv = lambda path, taxonomy, limit=None: [{"ticket_id": "x"}]
    monkeypatch.setitem(sys.modules, "server.evaluation.run", module)
    return calls


def test_cli_eval_gate_yes_records_manifest(cli, reg, fake_eval, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text(DATA)
    out = tmp_path / "report"
    r = cli("eval", "--data", str(data), "--model", "b", "--baseline", "a", "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    assert "Proceed with deployment: yes" in r.output.splitlines()
    assert fake_eval == ["b", "a", "classical"]
    last = json.loads(r.output.strip().splitlines()[-1])
    assert last["gate"]["verdict"] == "yes" and last["category_accuracy"] == 0.85
    assert last["classical"]["category_accuracy"] == 0.5
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    gate = json.loads((out / "gate.json").read_text())
    assert gate["verdict"] == "yes" and gate["data"] == sha and gate["baseline"]["name"] == "a" and gate["comparison"]
    assert "Proceed with deployment: yes" in (out / "comparison.md").read_text()
    b = reg.get("b").manifest
    assert b["gate"]["verdict"] == "yes" and b["evals"][sha]["category_accuracy"] == 0.85
    assert b["evals"][sha]["data_sha256"] == sha
    assert reg.get("a").manifest["evals"][sha]["category_accuracy"] == 0.80, "the baseline's eval is kept too"
    reg.validate("b")  # manifest edits must not break the checksums

    # Second run: the baseline's stored eval of this data is reused, not recomputed.
    fake_eval.clear()
    r = cli("eval", "--data", str(data), "--model", "b", "--baseline", "a")
    assert r.exit_code == 0, r.output
    assert fake_eval == ["b", "classical"] and "reusing" in r.output


def test_cli_eval_gate_no(cli, reg, fake_eval, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text(DATA)
    r = cli("eval", "--data", str(data), "--model", "ungated", "--baseline", "a")
    assert r.exit_code == 0, r.output
    assert "Proceed with deployment: no" in r.output.splitlines()
    assert reg.get("ungated").manifest["gate"]["verdict"] == "no"
    r = cli("eval", "--data", str(data), "--model", "ungated", "--baseline", "a", "--strict")
    assert r.exit_code == 3
    # A later run without a baseline must not launder the verdict into a "yes".
    r = cli("eval", "--data", str(data), "--model", "ungated")
    assert r.exit_code == 0 and "Proceed with deployment: yes" in r.output
    assert reg.get("ungated").manifest["gate"]["verdict"] == "no"


def test_cli_eval_baseline_report_and_base(cli, reg, fake_eval, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text(DATA)
    report = tmp_path / "report.json"
    base = fake_summary(0.9)
    per_label = base.pop("per_label")
    report.write_text(
        json.dumps({"summary": base, "fields": {"category": {"per_label": per_label["category"]}}, "groups": {}})
    )
    r = cli("eval", "--data", str(data), "--model", "a", "--baseline", str(report))
    assert r.exit_code == 0, r.output
    assert "Proceed with deployment: no" in r.output and fake_eval == ["a", "classical"]
    fake_eval.clear()
    r = cli("eval", "--data", str(data), "--model", "a", "--baseline", "base")
    assert r.exit_code == 0, r.output
    assert fake_eval == ["a", None, "classical"] and "Proceed with deployment: yes" in r.output


def test_cli_eval_bad_inputs(cli, fake_eval, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text(DATA)
    r = cli("eval", "--data", str(data), "--model", "no-such-adapter")
    assert r.exit_code == 1 and "neither" in r.output and fake_eval == []
    r = cli("eval", "--data", str(data), "--model", "a", "--baseline", "typo")
    assert r.exit_code == 1 and "'typo'" in r.output and fake_eval == [], (
        "a bad baseline fails before the slow candidate eval"
    )
    r = cli("eval", "--data", str(data), "--model", "a", "--baseline", str(tmp_path / "gone.json"))
    assert r.exit_code == 2 and "baseline report not found" in r.output and fake_eval == []
    rules = tmp_path / "rules.yaml"
    rules.write_text("max_drop: 1\n")
    r = cli("eval", "--data", str(data), "--model", "a", "--rules", str(rules))
    assert r.exit_code == 2 and "unknown key" in r.output


# -- plugin hook ----------------------------------------------------------------------------------


def test_plugin_hook(monkeypatch, capsys):
    import importlib.metadata

    import typer

    from server.cli.plugins import load_plugins

    class EP:
        def __init__(self, name, fn):
            self.name, self.value, self._fn = name, f"pkg:{name}", fn

        def load(self):
            return self._fn()

    def good():
        def register(app):
            app.command("hello")(lambda: None)

        return register

    def broken():
        raise ImportError("no module named finetune.cli")

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [EP("broken", broken), EP("good", good)])
    target = typer.Typer()
    load_plugins(target)
    assert [c.name for c in target.registered_commands] == ["hello"]
    assert "plugin 'broken'" in capsys.readouterr().err


def test_lock_serialises_read_modify_write(reg):
    """Each _locked() opens its own file description, so flock excludes threads as it does processes."""
    import threading

    folder = reg.adapters_dir / "a"

    def bump(m: dict) -> None:
        m["counter"] = m.get("counter", 0) + 1

    def worker() -> None:
        for _ in range(25):
            reg.update_manifest(folder, bump)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reg.get("a").manifest["counter"] == 75


def test_cli_eval_gate_refuses_a_candidate_below_the_classical_baseline(cli, reg, fake_eval, tmp_path, monkeypatch):
    data = tmp_path / "d.csv"
    data.write_text(DATA)
    module = sys.modules["server.evaluation.run"]
    monkeypatch.setattr(module, "run_classical_eval", lambda *a, **k: fake_summary(0.95))
    r = cli("eval", "--data", str(data), "--model", "b", "--baseline", "a")
    assert r.exit_code == 0, r.output
    assert "Proceed with deployment: no" in r.output.splitlines()
    assert "category 0.850 vs 0.950 (LOWER)" in r.output
    rules = tmp_path / "rules.yaml"
    rules.write_text("classical_margin: -1\n")
    r = cli("eval", "--data", str(data), "--model", "b", "--baseline", "a", "--rules", str(rules))
    assert "Proceed with deployment: yes" in r.output.splitlines()
