"""The regression gate on crafted summaries (no model)."""

from __future__ import annotations

import copy

import pytest

from server.evaluation.comparison import compare_table, comparison_markdown
from server.evaluation.gate import Check, GateRules, GateVerdict, evaluate_gate, load_rules

LABELS = ("Billing", "General", "Sales", "Technical")


def summary(
    acc: float = 0.80,
    ece: float = 0.05,
    invalid: int = 0,
    recalls: dict[str, float] | None = None,
    sha: str | None = "abc",
    n: int = 100,
) -> dict:
    recalls = {lab: 0.80 for lab in LABELS} | (recalls or {})
    s = {
        "n": n,
        "invalid_json": invalid,
        "category_accuracy": acc,
        "category_macro_f1": acc - 0.05,
        "category_ece": ece,
        "priority_accuracy": 0.6,
        "priority_macro_f1": 0.5,
        "priority_ece": 0.1,
        "sentiment_accuracy": None,
        "sentiment_macro_f1": None,
        "sentiment_ece": None,
        "per_label": {
            "category": {lab: {"precision": 0.8, "recall": r, "f1": 0.8, "support": 25} for lab, r in recalls.items()}
        },
    }
    s["per_language"] = {
        "category": {
            "en": {"n": 60, "accuracy": acc},
            "de": {"n": 34, "accuracy": acc},
            "fr": {"n": 6, "accuracy": acc},
        }
    }
    if sha is not None:
        s["data_sha256"] = sha
    return s


NO_CLASSICAL = GateRules(classical_margin=-1)


def check(verdict: GateVerdict, name: str) -> Check:
    (found,) = [c for c in verdict.checks if c.name == name]
    return found


def test_identical_reports_proceed():
    v = evaluate_gate(summary(), summary(), classical=summary(acc=0.7))
    assert v.proceed, v.checks
    assert [c.name for c in v.checks] == [
        "invalid JSON",
        "same data",
        "category accuracy",
        "priority accuracy",
        "category per-label recall",
        "per-language accuracy",
        "category ECE",
        "priority ECE",
        "beats classical baseline",
    ]
    assert v.line() == "Proceed with deployment: yes"


def test_every_label_field_is_checked():
    cand = summary()
    cand["priority_accuracy"] = 0.58  # 2 points below the baseline's 0.60; the default allows 1
    v = evaluate_gate(cand, summary(), NO_CLASSICAL)
    assert not check(v, "priority accuracy").passed and not v.proceed
    cand["priority_accuracy"] = 0.595
    assert check(evaluate_gate(cand, summary(), NO_CLASSICAL), "priority accuracy").passed
    cand["priority_ece"] = 0.2
    assert not check(evaluate_gate(cand, summary(), NO_CLASSICAL), "priority ECE").passed


def test_a_language_dropping_fails_but_thin_languages_are_not_judged():
    cand = summary()
    cand["per_language"]["category"]["de"]["accuracy"] = 0.70
    c = check(evaluate_gate(cand, summary(), NO_CLASSICAL), "per-language accuracy")
    assert not c.passed and "category/de" in c.detail
    cand = summary()
    cand["per_language"]["category"]["fr"]["accuracy"] = 0.0  # 6 rows: below min_language_support
    assert check(evaluate_gate(cand, summary(), NO_CLASSICAL), "per-language accuracy").passed
    assert not check(
        evaluate_gate(cand, summary(), GateRules(min_language_support=5, classical_margin=-1)), "per-language accuracy"
    ).passed
    del cand["per_language"]
    assert not check(evaluate_gate(cand, summary(), NO_CLASSICAL), "per-language accuracy").passed


def test_classical_baseline_must_be_matched_on_every_field():
    classical = summary(acc=0.75)
    classical["priority_accuracy"] = 0.65  # better than the candidate's 0.60
    c = check(evaluate_gate(summary(), None, GateRules(), classical), "beats classical baseline")
    assert not c.passed and "priority 0.600 vs 0.650 (LOWER)" in c.detail
    assert check(
        evaluate_gate(summary(), None, GateRules(classical_margin=0.05), classical), "beats classical baseline"
    ).passed
    assert not check(evaluate_gate(summary(), None), "beats classical baseline").passed, (
        "a rule that could not be checked fails"
    )
    assert "beats classical baseline" not in [c.name for c in evaluate_gate(summary(), None, NO_CLASSICAL).checks]


def test_verdict_line_no():
    v = evaluate_gate(summary(acc=0.70), summary(acc=0.80), NO_CLASSICAL)
    assert not v.proceed
    assert v.line() == "Proceed with deployment: no"
    assert v.to_dict()["verdict"] == "no" and v.to_dict()["proceed"] is False


@pytest.mark.parametrize(("cand", "passed"), [(0.79, False), (0.80, True), (0.85, True)])
def test_overall_accuracy_may_not_drop(cand, passed):
    v = evaluate_gate(summary(acc=cand), summary(acc=0.80), NO_CLASSICAL)
    assert check(v, "category accuracy").passed is passed
    assert v.proceed is passed


def test_overall_accuracy_tolerance():
    rules = GateRules(min_category_accuracy_delta=0.02)
    assert check(evaluate_gate(summary(acc=0.785), summary(acc=0.80), rules), "category accuracy").passed
    assert not check(evaluate_gate(summary(acc=0.775), summary(acc=0.80), rules), "category accuracy").passed


def test_one_label_dropping_three_points_fails():
    v = evaluate_gate(summary(recalls={"Sales": 0.77}), summary())
    c = check(v, "category per-label recall")
    assert not c.passed and "Sales" in c.detail
    assert not v.proceed


def test_one_label_dropping_one_point_passes():
    v = evaluate_gate(summary(recalls={"Sales": 0.79}), summary(), NO_CLASSICAL)
    assert check(v, "category per-label recall").passed
    assert v.proceed


def test_label_drop_of_exactly_the_tolerance_passes():
    # 0.90 - 0.88 is 0.0200000000000000018 in floats: must still count as "2 points".
    v = evaluate_gate(summary(recalls={"Sales": 0.88}), summary(recalls={"Sales": 0.90}))
    assert check(v, "category per-label recall").passed


def test_label_without_support_is_skipped():
    cand = summary(recalls={"Sales": 0.0})
    base = summary(recalls={"Sales": 0.9})
    base["per_label"]["category"]["Sales"]["support"] = 0
    assert check(evaluate_gate(cand, base), "category per-label recall").passed
    cand2, base2 = copy.deepcopy(base), summary(recalls={"Sales": 0.9})
    cand2["per_label"]["category"]["Sales"]["recall"] = 0.0
    assert check(evaluate_gate(cand2, base2), "category per-label recall").passed


def test_missing_per_label_metrics_fail():
    cand = summary()
    del cand["per_label"]
    c = check(evaluate_gate(cand, summary()), "category per-label recall")
    assert not c.passed and "candidate" in c.detail


def test_per_label_read_from_report_fields():
    base = summary(recalls={"Sales": 0.9})
    report_style = {k: v for k, v in base.items() if k != "per_label"} | {
        "fields": {"category": {"per_label": base["per_label"]["category"]}}
    }
    assert not check(evaluate_gate(summary(recalls={"Sales": 0.8}), report_style), "category per-label recall").passed


@pytest.mark.parametrize(("increase", "passed"), [(0.03, False), (0.01, True), (-0.02, True)])
def test_ece_increase(increase, passed):
    v = evaluate_gate(summary(ece=0.05 + increase), summary(ece=0.05), NO_CLASSICAL)
    assert check(v, "category ECE").passed is passed
    assert v.proceed is passed


def test_ece_missing_on_one_side_fails_on_both_passes():
    assert not check(evaluate_gate(summary(ece=None), summary()), "category ECE").passed
    assert check(evaluate_gate(summary(ece=None), summary(ece=None)), "category ECE").passed


@pytest.mark.parametrize(("invalid", "passed"), [(0, True), (1, False)])
def test_invalid_json(invalid, passed):
    v = evaluate_gate(summary(invalid=invalid), summary(), NO_CLASSICAL)
    assert check(v, "invalid JSON").passed is passed
    assert v.proceed is passed
    assert evaluate_gate(summary(invalid=1), summary(), GateRules(max_invalid_json=1, classical_margin=-1)).proceed


def test_no_baseline_only_absolute_checks():
    v = evaluate_gate(summary(acc=0.1, ece=0.9), None, NO_CLASSICAL)
    assert [c.name for c in v.checks] == ["invalid JSON"]
    assert v.proceed
    assert not evaluate_gate(summary(invalid=3), None, NO_CLASSICAL).proceed


def test_different_data_hashes_fail():
    v = evaluate_gate(summary(sha="aaa"), summary(sha="bbb"))
    c = check(v, "same data")
    assert not c.passed and "data_sha256" in c.detail
    assert not v.proceed


def test_same_data_without_hashes_compares_row_counts():
    assert check(evaluate_gate(summary(sha=None), summary()), "same data").passed
    assert not check(evaluate_gate(summary(sha=None, n=50), summary(n=100)), "same data").passed


def test_other_field():
    cand, base = summary(), summary()
    cand["per_label"]["intent"] = cand["per_label"].pop("category")
    base["per_label"]["intent"] = base["per_label"].pop("category")
    for s in (cand, base):
        s["intent_accuracy"], s["intent_ece"] = s.pop("category_accuracy"), s.pop("category_ece")
    v = evaluate_gate(cand, base, GateRules(field="intent", classical_margin=-1))
    assert v.proceed, v.checks
    assert not evaluate_gate(cand, base, NO_CLASSICAL).proceed  # the default field is absent: cannot be judged


def test_load_rules(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text("max_per_label_drop: 0.05\nmax_invalid_json: 2\nfield: intent\n")
    r = load_rules(p)
    assert r == GateRules(max_per_label_drop=0.05, max_invalid_json=2, field="intent")
    assert load_rules({"max_ece_increase": 1}) == GateRules(max_ece_increase=1.0)
    assert load_rules({"classical_train": ["a.csv"], "classical_label_sources": []}).classical_train == ("a.csv",)
    with pytest.raises(ValueError, match="list of strings"):
        load_rules({"classical_train": [1]})
    with pytest.raises(ValueError, match="unknown key"):
        load_rules({"max_drop": 0.1})
    with pytest.raises(ValueError, match="number"):
        load_rules({"max_ece_increase": "a lot"})
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_rules(p)
    with pytest.raises(ValueError, match="not found"):
        load_rules(tmp_path / "missing.yaml")


def test_compare_table():
    rows = compare_table(summary(acc=0.85, recalls={"Sales": 0.7}), summary(acc=0.80))
    by = {(r["field"], r["label"], r["metric"]): r for r in rows}
    assert by[("category", None, "accuracy")]["delta"] == pytest.approx(0.05)
    assert ("priority", None, "macro_f1") in by
    assert not any(r["field"] == "sentiment" for r in rows), "fields absent from the data are left out"
    sales = by[("category", "Sales", "recall")]
    assert sales["candidate"] == 0.7 and sales["baseline"] == 0.8 and sales["delta"] == pytest.approx(-0.1)
    assert {r["label"] for r in rows if r["label"] and not r["label"].startswith("language ")} == set(LABELS)
    assert by[("category", "language de", "accuracy")]["candidate"] == 0.85
    no_base = compare_table(summary(), None)
    assert all(r["baseline"] is None and r["delta"] is None for r in no_base)
    md = comparison_markdown(rows, evaluate_gate(summary(), summary(), NO_CLASSICAL))
    assert "Proceed with deployment: yes" in md and "| category | Sales | recall |" in md
