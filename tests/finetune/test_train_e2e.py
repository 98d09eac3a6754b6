"""A real LoRA run: a few steps on a handful of tickets with the real base model, interrupted and
resumed, calibrated, then served by the runner (a minute or two on CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import finetune.train as train_mod
from finetune.calibrate import GRID, correctness_nll, held_out_traces
from finetune.config import load_config
from server.engines.embedded.engine import BatchRunner
from server.prompts import TicketInput
from server.registry import AdapterEntry, Registry

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parents[2]


def tiny_config(out: Path, **extra):
    over = {
        "name": "tiny",
        "output_dir": str(out),
        "data.files": [str(ROOT / "data/tickets/sample100.csv")],
        "data.max_rows": 14,
        "data.heldout_fraction": 0.15,
        "data.feedback": False,
        "lora.r": 4,
        "lora.alpha": 8,
        "lora.target_modules": ["q_proj", "v_proj"],
        "train.batch_size": 2,
        "train.max_steps": 3,
        "train.checkpoint_every": 1,
        "train.max_length": 640,
        "train.lr": 1e-3,
        **extra,
    }
    return load_config(ROOT / "finetune/configs/tickets.yaml", over)


def test_train_interrupt_resume_calibrate_and_serve(tmp_path, fast_settings, taxonomy, monkeypatch):
    cfg = tiny_config(tmp_path)
    real_loss, calls = train_mod.answer_loss, {"n": 0}

    def crash_on_third(model, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real_loss(model, batch)

    monkeypatch.setattr(train_mod, "answer_loss", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        train_mod.main(cfg, fast_settings, progress=False)
    assert sorted(p.name for p in (tmp_path / "tiny" / "checkpoints").glob("step-*")) == ["step-000001", "step-000002"]
    monkeypatch.setattr(train_mod, "answer_loss", real_loss)

    out = train_mod.main(cfg, fast_settings, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["resumed_from_step"] == 2 and manifest["training"]["steps"] == 3
    assert manifest["prompt_version"] == "classify/v2" and manifest["taxonomy"] == "tickets@1"
    assert (
        manifest["data"]["sources"][0]["rows_used"] == 100
        and manifest["data"]["train_rows"] + manifest["data"]["heldout_rows"] == 14
    )
    assert manifest["hyperparameters"]["lora"]["r"] == 4
    cal = manifest["calibration"]
    assert set(cal["temperatures"]) == {"category", "priority", "sentiment"}
    assert_temperatures_minimise_heldout_nll(out, fast_settings, cal["temperatures"])
    assert not (out / "checkpoints").exists()
    # The held-out split is stored by reference: ids, sources and hashes, no ticket text.
    held = json.loads((out / "heldout.json").read_text())["rows"]
    assert not (out / "heldout.jsonl").exists() and len(held) == manifest["data"]["heldout_rows"] == cal["n"]
    assert {r["source"] for r in held} == {"data/tickets/sample100.csv"}
    assert set(held[0]) == {"uid", "source", "sha256"}
    Registry(tmp_path / "registry.json", tmp_path).validate("tiny")  # hashes in the manifest match the files

    runner = BatchRunner(fast_settings, taxonomy, adapter=AdapterEntry("tiny", out, manifest))
    assert runner.prompt_version == "classify/v2" and runner.temperatures == cal["temperatures"]
    [result] = runner.run([TicketInput("Refund", "I was charged twice, please refund.")])
    assert result.output["category"] in taxonomy.field("category").values
    assert set(result.confidence) == {"category", "priority", "sentiment"}


def assert_temperatures_minimise_heldout_nll(adapter: Path, settings, temperatures: dict[str, float]) -> None:
    """Each recorded T is the grid's minimiser of the held-out log-loss of correctness (so no worse than
    T=1), recomputed from the adapter's own held-out traces: a fit returning any other grid value fails."""
    evidence = held_out_traces(adapter, settings, progress=False)
    assert set(evidence) == set(temperatures)
    informative = 0
    for name, recorded in temperatures.items():
        nll = {t: correctness_nll(evidence[name].traces, evidence[name].correct, t) for t in GRID}
        fitted = min(GRID, key=lambda t: abs(t - recorded))  # the manifest keeps 4 decimals
        assert abs(fitted - recorded) < 1e-3, f"{name}: T={recorded} is not a grid value"
        best = min(nll.values())
        assert nll[fitted] <= best + 1e-9, f"{name}: NLL {nll[fitted]:.6f} at T={recorded}, {best:.6f} at the best T"
        assert nll[fitted] <= nll[1.0]
        informative += max(nll.values()) > best + 1e-6
    # A flat log-loss (every T equally good) would make the check above vacuous.
    assert informative, "the held-out split tells no temperatures apart"


def test_bad_training_file_fails_before_any_model_is_loaded(tmp_path, fast_settings, monkeypatch):
    bad = tmp_path / "bad.csv"
    bad.write_text("subject,body,category,priority,sentiment,reasoning\nx,y,Technical,Soon,neutral,r\n")
    monkeypatch.setattr(
        "transformers.AutoModelForCausalLM.from_pretrained", lambda *a, **k: pytest.fail("model loaded")
    )
    from finetune.data import DataError

    with pytest.raises(DataError, match=r"row 2, column 'priority': 'Soon'"):
        train_mod.main(
            tiny_config(tmp_path, **{"data.files": [str(bad)], "data.label_sources": None}),
            fast_settings,
            progress=False,
        )
