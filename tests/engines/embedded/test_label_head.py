"""A label head served by the real engine: fitted by the fine-tuning job on the real model's features,
its labels and probabilities are what the engine answers, copy-only codes come from the ticket, and a
taxonomy's out-of-scope threshold turns unsure answers into the out-of-scope label."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from finetune.config import load_config
from finetune.train import main as finetune
from server.engines.base import EngineOutput
from server.engines.embedded.engine import BatchRunner
from server.evaluation.run import read_labelled_csv, row_ticket
from server.heads.head import LabelHead
from server.prompts import TicketInput
from server.registry import AdapterEntry, Registry
from server.taxonomy import load_taxonomy
from tests.conftest import ROOT

pytestmark = pytest.mark.model

HEAD_ROWS = 24


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory, fast_settings):
    """A head-only adapter over the base model, fitted on 24 tickets of the sample (30% held out). Feature
    extraction runs the model once per ticket (the cache in var/features/ starts empty in CI); the 24 still
    hold every category and two or more values of each field in the training split."""
    out = tmp_path_factory.mktemp("heads")
    taxonomy = out / "tickets-oos.yaml"
    raw = yaml.safe_load((ROOT / "server" / "taxonomies" / "tickets.yaml").read_text())
    raw["out_of_scope"] = {"field": "category", "label": "Unclear", "threshold": 0.0}
    taxonomy.write_text(yaml.safe_dump(raw))
    cfg = load_config(
        None,
        {
            "name": "sample-head",
            "kind": "head",
            "output_dir": str(out),
            "taxonomy": str(taxonomy),
            "data.files": [str(ROOT / "data/tickets/sample100.csv")],
            "data.label_sources": None,
            "data.feedback": False,
            "data.heldout_fraction": 0.3,
            "data.max_rows": HEAD_ROWS,
            "data.target": "labels",
            "head.enabled": True,
        },
    )
    folder = finetune(cfg, fast_settings, progress=False)
    return folder, taxonomy


@pytest.fixture(scope="module")
def head_runner(head_dir, fast_settings) -> BatchRunner:
    """One engine over the head for the module: a model load costs seconds on CPU."""
    folder, taxonomy_path = head_dir
    manifest = json.loads((folder / "manifest.json").read_text())
    return BatchRunner(fast_settings, load_taxonomy(taxonomy_path), adapter=AdapterEntry(folder.name, folder, manifest))


def test_head_only_adapter_is_complete_and_validates(head_dir):
    folder, _ = head_dir
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "head" and not (folder / "adapter_model.safetensors").exists()
    assert set(manifest["adapter_files"]) == {"head.json", "head.safetensors", "head_vocabulary.json"}
    assert set(manifest["head"]["fields"]) == {"category", "priority", "sentiment"}
    assert manifest["head"]["train_rows"] + manifest["head"]["heldout_rows"] == HEAD_ROWS
    Registry(folder.parent / "registry.json", folder.parent).validate(folder.name)
    (folder / "head.json").write_text((folder / "head.json").read_text() + " ")
    with pytest.raises(Exception, match="sha256 of head.json"):
        Registry(folder.parent / "registry.json", folder.parent).validate(folder.name)


def test_engine_answers_with_the_heads_labels_and_probabilities(head_dir, head_runner):
    folder, _ = head_dir
    runner = head_runner
    assert runner.head is not None and runner.review_renderer is None, "a head gives no second opinion to re-review"
    rows = read_labelled_csv(ROOT / "data/tickets/sample100.csv", load_taxonomy("tickets"))[:6]
    tickets = [row_ticket(r) for r in rows] + [
        TicketInput("Database down", "Our app fails with ORA-12541 since 9:00; order ORD-445566 is stuck.")
    ]
    outs = runner.run(tickets)
    head = LabelHead.load(folder)
    expected = head.predict(runner.features(tickets, head.pools), tickets)
    for out, exp in zip(outs, expected):
        assert isinstance(out, EngineOutput)
        got = {
            "category": out.output["category"],
            "priority": out.output["priority"],
            "sentiment": out.output["extracted_info"]["sentiment"],
        }
        assert got == {k: v[0] for k, v in exp.items()}
        for k, (_, p) in exp.items():
            assert out.confidence[k] == pytest.approx(p, abs=1e-6)
    assert outs[-1].output["extracted_info"]["error_code"] in (None, "ORA-12541", "ORD-445566")


def test_out_of_scope_threshold_relabels_unsure_answers(head_runner, monkeypatch):
    runner = head_runner
    # monkeypatch: the runner is shared, the next test must see it as loaded.
    monkeypatch.setattr(runner, "labels_only", True)
    tickets = [
        TicketInput("Hello", "Just saying hi."),
        TicketInput("Invoice", "I was charged twice for my invoice, please refund."),
    ]
    assert all(o.output["category"] != "Unclear" for o in runner.run(tickets)), "threshold 0: nothing is out of scope"
    monkeypatch.setattr(runner, "out_of_scope", runner.out_of_scope.__class__("category", "Unclear", 1.01))
    outs = runner.run(tickets)
    assert all(o.output["category"] == "Unclear" for o in outs)
    conf = np.array([o.confidence["category"] for o in outs])
    assert (conf < 1.01).all() and (conf > 0).all(), "the confidence stays the head's"
