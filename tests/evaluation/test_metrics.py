"""Hand-computed checks of the evaluation metrics: these numbers gate model choices, so pin them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from server.evaluation.metrics import (
    OTHER_LABEL,
    expected_calibration_error,
    extraction_match,
    field_report,
    group_accuracy,
    reliability_bins,
)


def test_ece_zero_when_bins_perfectly_calibrated() -> None:
    conf = [0.25] * 4 + [0.75] * 4
    correct = [1, 0, 0, 0] + [1, 1, 1, 0]
    assert expected_calibration_error(conf, correct, n_bins=10) == pytest.approx(0.0)


def test_ece_two_bin_hand_computed() -> None:
    # bin [0,.5): conf .2,.4 -> mean .3, acc .5, gap .2 ; bin [.5,1]: conf .6,.9 -> mean .75, acc 1, gap .25
    # ECE = 2/4 * .2 + 2/4 * .25 = .225
    conf = [0.2, 0.4, 0.6, 0.9]
    correct = [True, False, True, True]
    assert expected_calibration_error(conf, correct, n_bins=2) == pytest.approx(0.225)


def test_ece_ignores_none_and_handles_empty() -> None:
    base = expected_calibration_error([0.2, 0.4, 0.6, 0.9], [1, 0, 1, 1], n_bins=2)
    with_none = expected_calibration_error([0.2, None, 0.4, 0.6, None, 0.9], [1, 0, 0, 1, 1, 1], n_bins=2)
    assert with_none == pytest.approx(base)
    assert expected_calibration_error([], []) == 0.0
    assert expected_calibration_error([None, None], [1, 0]) == 0.0


def test_ece_rejects_out_of_range_and_misaligned() -> None:
    with pytest.raises(ValueError):
        expected_calibration_error([1.5], [1])
    with pytest.raises(ValueError):
        expected_calibration_error([0.5, 0.6], [1])


def test_reliability_bins_edges_and_counts() -> None:
    bins = reliability_bins([0.0, 0.5, 0.99, 1.0], [0, 1, 1, 0], n_bins=2)
    assert [(b["lower"], b["upper"], b["count"]) for b in bins] == [(0.0, 0.5, 1), (0.5, 1.0, 3)]
    assert bins[1]["accuracy"] == pytest.approx(2 / 3)
    assert bins[1]["confidence"] == pytest.approx((0.5 + 0.99 + 1.0) / 3)
    empty = reliability_bins([0.95], [1], n_bins=4)
    assert [b["count"] for b in empty] == [0, 0, 0, 1]
    assert empty[0]["accuracy"] is None and empty[0]["confidence"] is None


def test_field_report_hand_computed() -> None:
    gold = ["A", "A", "B", "B", None, ""]
    pred = ["A", None, "B", "A", "B", "A"]
    conf = [0.9, None, 0.8, 0.7, 0.99, 0.5]
    rep = field_report(gold, pred, conf)
    assert rep["n"] == 4  # missing / blank gold skipped
    assert rep["accuracy"] == pytest.approx(0.5)  # the None prediction is wrong
    # A: tp1 fp1 fn1 -> P .5 R .5 F1 .5 ; B: tp1 fp0 fn1 -> P 1 R .5 F1 2/3
    assert rep["per_label"]["A"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert rep["per_label"]["B"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert rep["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert rep["confusion"]["labels"] == ["A", "B", OTHER_LABEL]
    assert rep["confusion"]["matrix"] == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert rep["n_with_confidence"] == 3
    # confidences .9 (right), .8 (right), .7 (wrong) in 15 bins: three singleton bins
    assert rep["ece"] == pytest.approx((0.1 + 0.2 + 0.7) / 3)


def test_field_report_macro_f1_matches_sklearn_with_fixed_labels() -> None:
    rng = np.random.default_rng(0)
    labels = ["Sales", "Technical", "Billing", "General"]
    gold = list(rng.choice(labels[:3], size=40))  # "General" never gold: still in the macro average
    pred = list(rng.choice(labels, size=40))
    rep = field_report(gold, pred, None, labels=labels)
    expected = f1_score(gold, pred, labels=labels, average="macro", zero_division=0)
    assert rep["macro_f1"] == pytest.approx(expected)
    assert rep["per_label"]["General"]["support"] == 0
    assert rep["ece"] is None and rep["n_with_confidence"] == 0
    assert rep["confusion"]["labels"] == labels
    assert sum(map(sum, rep["confusion"]["matrix"])) == 40


def test_field_report_empty_does_not_crash() -> None:
    rep = field_report([None, ""], ["A", "B"], [0.5, 0.5], labels=["A", "B"])
    assert rep["n"] == 0 and rep["accuracy"] == 0.0 and rep["macro_f1"] == 0.0
    assert rep["confusion"]["matrix"] == [[0, 0], [0, 0]]


def test_group_accuracy() -> None:
    groups = ["en", "en", "de", None, "de"]
    gold = ["A", "B", "A", "A", None]
    pred = ["A", "A", "A", None, "A"]
    assert group_accuracy(groups, gold, pred) == {
        "de": {"n": 1, "accuracy": 1.0},
        "en": {"n": 2, "accuracy": 0.5},
        "unknown": {"n": 1, "accuracy": 0.0},
    }


def test_extraction_match() -> None:
    gold = ["Google Workspace", None, "", "0x80070005", None]
    pred = ["  google  workspace ", None, None, "0x80070006", "Outlook"]
    res = extraction_match(gold, pred)
    assert res["n"] == 5
    assert res["exact_match"] == pytest.approx(3 / 5)
    assert res["presence_agreement"] == pytest.approx(4 / 5)
    assert res["n_gold_present"] == 2
    assert res["exact_match_gold_present"] == pytest.approx(0.5)
    assert extraction_match([], [])["exact_match"] == 0.0
