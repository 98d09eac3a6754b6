"""The A/B report's statistics (known values) and its verdicts on a seeded store: a worse candidate is kept
out, a sample too small says so with the sample it needs, an equally accurate but cheaper one is promoted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from server.cli import app
from server.config import load_settings
from server.reporting.ab_report import ab_report
from server.reporting.stats import (
    bootstrap_diff,
    bootstrap_mean,
    min_detectable_difference,
    newcombe_diff,
    required_per_arm,
    wilson,
)
from server.store.db import migrate, open_store
from server.store.models import AuditEvent
from tests.reporting.seed import seed

NOW = datetime.now(UTC)
SINCE, UNTIL = NOW - timedelta(days=7), NOW + timedelta(minutes=1)


def test_wilson_and_newcombe_known_values() -> None:
    w = wilson(8, 10)
    assert w is not None and (round(w.low, 3), round(w.high, 3)) == (0.490, 0.943)
    assert wilson(0, 0) is None
    zero = wilson(0, 20)
    assert zero is not None and zero.low == 0.0 and 0.16 < zero.high < 0.17  # Wilson stays above 0 at 0/n
    # Newcombe (1998), example: 56/70 vs 48/80 -> 0.2000 [0.0524, 0.3339].
    a, b = wilson(56, 70), wilson(48, 80)
    assert a is not None and b is not None
    d = newcombe_diff(a, b)
    assert (round(d.value, 4), round(d.low, 4), round(d.high, 4)) == (0.2, 0.0524, 0.3339)
    # (1.96 + 0.8416)^2 * (0.85*0.15 + 0.9*0.1) / 0.05^2 = 682.9
    assert required_per_arm(0.85, 0.05) == 683
    mdd = min_detectable_difference(0.9, 100, 0.9, 100)
    assert mdd is not None and abs(mdd - 2.8016 * (2 * 0.09 / 100) ** 0.5) < 1e-3
    m = bootstrap_mean([100.0] * 50 + [200.0] * 50)
    assert m is not None and m.value == 150.0 and m.low < 150 < m.high and m.high - m.low < 30
    diff = bootstrap_diff([1.0, 1.1, 0.9] * 20, [2.0, 2.1, 1.9] * 20)
    assert diff is not None and diff.high < 0 and abs(diff.value + 1.0) < 1e-9


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'ab.db'}", storage={"data_key_file": tmp_path / "k"})
    db = open_store(settings.database_url, settings.storage)
    migrate(db)
    with Session(db) as s:
        yield s
    db.dispose()


def _arm(session: Session, variant: str, n: int, kept: int, *, latency: float, cost: float) -> None:
    for i in range(n):
        correction = {} if i < kept else {"category": "Technical"}
        seed(
            session,
            at=NOW - timedelta(hours=1),
            variant=variant,
            latency_ms=latency + (i % 5),
            cost_usd=cost,
            correction=correction,
        )


def test_a_worse_candidate_is_kept_out(session: Session) -> None:
    _arm(session, "control", 100, 90, latency=100, cost=0.001)
    _arm(session, "candidate", 100, 70, latency=100, cost=0.001)
    seed(session, at=NOW - timedelta(hours=1), variant="candidate", failed=True)
    seed(session, at=NOW - timedelta(days=9), variant="candidate", correction={"category": "Technical"})  # too old
    seed(session, at=NOW - timedelta(hours=1))  # no variant: not an arm
    report = ab_report(session, SINCE, UNTIL, variants=["control", "candidate"])
    control, candidate = report.variant("control"), report.variant("candidate")
    assert (control.results, control.reviewed, control.kept) == (100, 100, 90)
    assert (candidate.results, candidate.failed, candidate.reviewed, candidate.kept) == (100, 1, 100, 70)
    assert candidate.accuracy is not None and candidate.accuracy.value == 0.7
    assert candidate.field_accuracy["category"] is not None and candidate.field_accuracy["category"].value == 0.7
    assert candidate.field_accuracy["priority"] is not None and candidate.field_accuracy["priority"].value == 1.0
    assert control.latency_ms is not None and control.latency_ms.value == 102.0  # 100 + mean of 0..4
    assert control.cost_total_usd == pytest.approx(0.1)
    assert [v.name for v in report.variants] == ["control", "candidate"]
    (comparison,) = report.comparisons
    assert comparison.baseline == "control" and comparison.verdict == "keep"
    assert comparison.accuracy_diff is not None and comparison.accuracy_diff.value == pytest.approx(-0.2)
    assert comparison.accuracy_diff.high < 0
    assert "keep control" in comparison.recommendation
    assert json.loads(json.dumps(report.to_json()))["comparisons"][0]["verdict"] == "keep"


def test_a_small_sample_says_it_is_too_small(session: Session) -> None:
    _arm(session, "control", 10, 9, latency=100, cost=0.001)
    _arm(session, "candidate", 10, 10, latency=100, cost=0.001)
    report = ab_report(session, SINCE, UNTIL, variants=["control", "candidate"])
    (comparison,) = report.comparisons
    assert comparison.verdict == "too_small"
    assert comparison.needed_per_arm == required_per_arm(0.9, 0.05)
    assert f"needs about {comparison.needed_per_arm} reviewed per arm" in comparison.recommendation
    assert comparison.detectable_diff is not None and comparison.detectable_diff > 0.2
    assert "TOO_SMALL" in report.to_text()


def test_equal_accuracy_and_cheaper_is_promoted(session: Session) -> None:
    _arm(session, "control", 100, 95, latency=100, cost=0.002)
    _arm(session, "candidate", 100, 95, latency=100, cost=0.001)
    report = ab_report(session, SINCE, UNTIL, variants=["control", "candidate"], min_effect=0.1)
    (comparison,) = report.comparisons
    assert comparison.verdict == "promote" and "cheaper" in comparison.recommendation
    assert comparison.cost_diff_usd is not None and comparison.cost_diff_usd.value == pytest.approx(-0.001)
    # The same data against the other baseline: equal accuracy but dearer -> keep.
    reverse = ab_report(session, SINCE, UNTIL, variants=["control", "candidate"], baseline="candidate", min_effect=0.1)
    assert reverse.comparisons[0].verdict == "keep" and "dearer" in reverse.comparisons[0].recommendation
    with pytest.raises(ValueError, match="baseline"):
        ab_report(session, SINCE, UNTIL, variants=["control"], baseline="nope")


def test_cli_ab_report_json_and_audit(tmp_path: Path) -> None:
    config = tmp_path / "triage.yaml"
    config.write_text(
        f"database_url: sqlite:///{tmp_path / 'cli.db'}\nstorage:\n  data_key_file: {tmp_path / 'k'}\n"
        "ab:\n  enabled: true\n  variants:\n    - {name: control}\n    - {name: candidate, prompt_version: v1}\n"
    )
    settings = load_settings(config)
    db = open_store(settings.database_url, settings.storage)
    migrate(db)
    with Session(db) as s:
        _arm(s, "control", 40, 36, latency=100, cost=0.001)
        _arm(s, "candidate", 40, 20, latency=100, cost=0.001)
    result = CliRunner().invoke(app, ["ab", "report", "--since", "7d", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["baseline"] == "control" and doc["rule"]["min_effect"] == 0.05
    by_name = {v["variant"]: v for v in doc["variants"]}
    assert by_name["control"]["kept"] == 36 and by_name["candidate"]["kept"] == 20
    assert doc["comparisons"][0]["verdict"] == "keep"
    text = CliRunner().invoke(app, ["ab", "report", "--config", str(config)])
    assert text.exit_code == 0 and "candidate vs control: KEEP" in text.output
    bad = CliRunner().invoke(app, ["ab", "report", "--since", "soon", "--config", str(config)])
    assert bad.exit_code == 2 and "--since" in bad.output
    bad = CliRunner().invoke(app, ["ab", "report", "--baseline", "nope", "--config", str(config)])
    assert bad.exit_code == 2 and "baseline 'nope'" in bad.output
    with Session(db) as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "ab_report")).all()
    db.dispose()
    assert len(events) == 2 and events[0].detail is not None and events[0].detail["verdicts"] == {"candidate": "keep"}
