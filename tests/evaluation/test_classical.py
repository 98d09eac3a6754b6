"""The classical baseline (TF-IDF + logistic regression) and the labelled-CSV reader it shares with eval."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import load_settings
from server.evaluation.classical import train_classical
from server.evaluation.run import read_labelled_csv, run_classical_eval
from server.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "tickets" / "sample100.csv"


def test_classical_baseline_learns_the_sample(tmp_path):
    taxonomy = load_taxonomy("tickets")
    model = train_classical([SAMPLE], taxonomy, None)
    rows = read_labelled_csv(SAMPLE, taxonomy)
    from server.evaluation.run import row_ticket

    probs = model.predict([row_ticket(r) for r in rows])
    assert set(probs) == {"category", "priority", "sentiment"}
    acc = sum(p == r["category"] for p, r in zip(probs["category"].argmax(), rows)) / len(rows)
    assert acc > 0.9, "a linear model must fit its own training rows"
    assert all(0 < c <= 1 for c in probs["priority"].max())


def test_classical_eval_leaves_the_evaluated_tickets_out(tmp_path):
    settings = load_settings(database_url="sqlite://")
    summary = run_classical_eval(settings, SAMPLE, [SAMPLE], None, out_dir=tmp_path / "r", exclude_ids={"nothing"})
    assert summary["n"] == 100 and summary["category_accuracy"] > 0.9 and (tmp_path / "r" / "report.md").is_file()
    ids = {r["ticket_id"] for r in read_labelled_csv(SAMPLE, load_taxonomy("tickets"))}
    with pytest.raises(ValueError, match="no training rows"):
        run_classical_eval(settings, SAMPLE, [SAMPLE], None, exclude_ids=ids)


def test_reader_filters_sources_and_checks_histories(tmp_path):
    taxonomy = load_taxonomy("tickets")
    p = tmp_path / "d.csv"
    p.write_text(
        'subject,body,category,label_source,previous_interactions\ns,b,Billing,reviewed,"[""Agent: hi""]"\ns,b,Sales,dataset,\n'
    )
    rows = read_labelled_csv(p, taxonomy, label_sources=["reviewed"])
    assert [r["category"] for r in rows] == ["Billing"]
    p.write_text("subject,body,category,previous_interactions\ns,b,Billing,not json\n")
    with pytest.raises(ValueError, match="row 2, column 'previous_interactions'"):
        read_labelled_csv(p, taxonomy)


def test_the_default_classical_data_follows_the_taxonomy(tmp_path, capsys):
    """Without `classical_train` in the rules the baseline trains on `data/<taxonomy>/train.csv`; a
    taxonomy without one, or rules naming a file of another taxonomy, skip the baseline with a message
    instead of failing the eval (CLINC150's eval once died here before printing its JSON line)."""
    import csv

    import yaml

    from server.evaluation.gate import GateRules
    from server.evaluation.workflow import EvalWorkflow

    def _classical_summary(settings, data, limit, rules, out):
        return EvalWorkflow(settings).classical_summary(data, limit, rules, out)

    settings = load_settings(database_url="sqlite://")
    summary = _classical_summary(settings, SAMPLE, None, GateRules(), None)
    assert summary is not None and summary["n"] == 100
    assert "data/tickets/train.csv (reviewed rows)" in capsys.readouterr().err

    raw = yaml.safe_load((ROOT / "server" / "taxonomies" / "tickets.yaml").read_text())
    raw["name"] = "nodata"
    (tmp_path / "nodata.yaml").write_text(yaml.safe_dump(raw))
    assert (
        _classical_summary(
            load_settings(database_url="sqlite://", taxonomy=str(tmp_path / "nodata.yaml")),
            SAMPLE,
            None,
            GateRules(),
            None,
        )
        is None
    )
    assert "no training file data/nodata/train.csv" in capsys.readouterr().err.replace(str(ROOT) + "/", "")

    with open(ROOT / "data" / "banking77" / "test.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:20]
    small = tmp_path / "b77.csv"
    with open(small, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    banking = load_settings(database_url="sqlite://", taxonomy="banking77")
    assert (
        _classical_summary(banking, small, None, GateRules(classical_train=("data/tickets/sample100.csv",)), None)
        is None
    )
    assert "is not a label of banking77" in capsys.readouterr().err
