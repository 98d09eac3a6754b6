"""Evaluation metrics for the triage classifier.

Pure Python + numpy + scikit-learn so the numbers can be computed (and unit-tested) on machines
without a model runtime. Conventions shared by every function:

* Rows whose gold label is missing (``None`` or blank) are skipped: an unlabelled row says nothing
  about the model.
* A missing prediction (``None``) counts as wrong: a model that fails to answer must not look better
  than one that answers badly.
* Confidences may be ``None`` (e.g. a backend without scores); those rows are left out of calibration
  metrics only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

OTHER_LABEL = "<other>"  # confusion-matrix bucket for None / out-of-taxonomy labels


def _check_lengths(*seqs: Sequence[Any]) -> None:
    """Misaligned inputs would silently produce wrong numbers, so refuse them."""
    lengths = {len(s) for s in seqs}
    if len(lengths) > 1:
        raise ValueError(f"input lengths differ: {[len(s) for s in seqs]}")


def _present(value: str | None) -> bool:
    return value is not None and str(value).strip() != ""


def _usable_confidences(
    confidences: Sequence[float | None], correct: Sequence[bool | int]
) -> tuple[np.ndarray, np.ndarray]:
    """Drop None/NaN confidences; reject values outside [0, 1] (usually logits passed by mistake)."""
    _check_lengths(confidences, correct)
    pairs = [(float(c), bool(k)) for c, k in zip(confidences, correct) if c is not None and not math.isnan(float(c))]
    conf = np.array([p[0] for p in pairs], dtype=float)
    corr = np.array([p[1] for p in pairs], dtype=float)
    if conf.size and (conf.min() < 0.0 or conf.max() > 1.0):
        raise ValueError("confidences must lie in [0, 1]")
    return conf, corr


def reliability_bins(
    confidences: Sequence[float | None], correct: Sequence[bool | int], n_bins: int = 15
) -> list[dict[str, Any]]:
    """Equal-width bins over [0, 1]: ``lower``, ``upper``, ``count``, ``confidence`` (mean), ``accuracy``.

    Bins are half-open ``[lower, upper)`` except the last, which also holds 1.0. Empty bins are kept
    (count 0, confidence/accuracy None) so plots have a fixed x-axis.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    conf, corr = _usable_confidences(confidences, correct)
    idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    bins: list[dict[str, Any]] = []
    for b in range(n_bins):
        mask = idx == b
        count = int(mask.sum())
        bins.append(
            {
                "lower": b / n_bins,
                "upper": (b + 1) / n_bins,
                "count": count,
                "confidence": float(conf[mask].mean()) if count else None,
                "accuracy": float(corr[mask].mean()) if count else None,
            }
        )
    return bins


def ece_from_bins(bins: Sequence[dict[str, Any]]) -> float:
    """Count-weighted mean |accuracy - confidence|; 0.0 when every bin is empty."""
    total = sum(b["count"] for b in bins)
    if total == 0:
        return 0.0
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / total)


def expected_calibration_error(
    confidences: Sequence[float | None], correct: Sequence[bool | int], n_bins: int = 15
) -> float:
    """Expected calibration error (Guo et al. 2017) with equal-width bins.

    Tells whether a stated confidence can be used as a routing threshold. Rows with a None
    confidence are ignored; no usable rows gives 0.0 rather than NaN so reports never break.
    """
    return ece_from_bins(reliability_bins(confidences, correct, n_bins))


def field_report(
    gold: Sequence[str | None],
    pred: Sequence[str | None],
    confidences: Sequence[float | None] | None = None,
    labels: Sequence[str] | None = None,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label P/R/F1, ECE and confusion matrix for one label field.

    ``labels`` fixes the label set (so a class the model never predicts still drags macro-F1
    down); default is the union of gold labels. A None or out-of-set prediction is wrong and
    counts against recall of the gold label. Beyond the required keys the result carries
    ``n_with_confidence`` and ``reliability`` (the bins) so reports can plot without the raw rows;
    ``ece`` is None when no row has a confidence (0.0 would read as "perfectly calibrated").
    """
    if confidences is None:
        confidences = [None] * len(gold)
    _check_lengths(gold, pred, confidences)
    keep = [i for i, g in enumerate(gold) if _present(g)]
    g = [str(gold[i]).strip() for i in keep]
    p = [str(pred[i]).strip() if _present(pred[i]) else None for i in keep]
    c = [confidences[i] for i in keep]
    label_set = list(labels) if labels is not None else sorted(set(g))
    correct = [gi == pi for gi, pi in zip(g, p)]
    n = len(g)

    # sklearn needs strings; the sentinel is outside label_set so it only costs recall.
    p_str = [pi if pi is not None else OTHER_LABEL for pi in p]
    if n and label_set:
        macro_f1 = float(f1_score(g, p_str, labels=label_set, average="macro", zero_division=0))
        prec, rec, f1, sup = precision_recall_fscore_support(g, p_str, labels=label_set, zero_division=0)
    else:
        macro_f1 = 0.0
        prec = rec = f1 = np.zeros(len(label_set))
        sup = np.zeros(len(label_set), dtype=int)
    per_label = {
        lab: {"precision": float(prec[k]), "recall": float(rec[k]), "f1": float(f1[k]), "support": int(sup[k])}
        for k, lab in enumerate(label_set)
    }

    known = set(label_set)
    cm_labels = list(label_set)
    if any(x not in known for x in g + p_str):
        cm_labels.append(OTHER_LABEL)
    pos = {lab: k for k, lab in enumerate(cm_labels)}
    matrix = np.zeros((len(cm_labels), len(cm_labels)), dtype=int)
    for gi, pi in zip(g, p_str):
        matrix[pos.get(gi, pos.get(OTHER_LABEL, 0)), pos.get(pi, pos.get(OTHER_LABEL, 0))] += 1

    bins = reliability_bins(c, correct, n_bins)
    n_conf = sum(b["count"] for b in bins)
    return {
        "n": n,
        "accuracy": float(np.mean(correct)) if n else 0.0,
        "macro_f1": macro_f1,
        "per_label": per_label,
        "ece": ece_from_bins(bins) if n_conf else None,
        "n_with_confidence": n_conf,
        "reliability": bins,
        "confusion": {"labels": cm_labels, "matrix": matrix.tolist()},
    }


def group_accuracy(
    groups: Sequence[str | None], gold: Sequence[str | None], pred: Sequence[str | None]
) -> dict[str, dict[str, Any]]:
    """Accuracy per group (e.g. language), to expose slices the overall number hides.

    Rows with missing gold are skipped; a missing group becomes ``"unknown"``.
    """
    _check_lengths(groups, gold, pred)
    tally: dict[str, list[int]] = {}
    for grp, g, p in zip(groups, gold, pred):
        if not _present(g):
            continue
        key = str(grp).strip() if _present(grp) else "unknown"
        hit = int(_present(p) and str(p).strip() == str(g).strip())
        tally.setdefault(key, [0, 0])
        tally[key][0] += 1
        tally[key][1] += hit
    return {k: {"n": n, "accuracy": hits / n} for k, (n, hits) in sorted(tally.items())}


def normalise_text(value: str | None) -> str | None:
    """Casefold, trim and collapse whitespace; blank means absent (None)."""
    if value is None:
        return None
    text = " ".join(str(value).split()).casefold()
    return text or None


def extraction_match(gold: Sequence[str | None], pred: Sequence[str | None]) -> dict[str, Any]:
    """Agreement on free-text fields (product, error_code).

    ``exact_match``: normalised strings equal (both absent counts as a match).
    ``presence_agreement``: both absent or both present, i.e. did the model know *whether* there is
    a value. ``exact_match_gold_present`` isolates rows that have a value, because fields such as
    error_code are absent almost everywhere and would otherwise look solved by always saying null.
    """
    _check_lengths(gold, pred)
    g = [normalise_text(x) for x in gold]
    p = [normalise_text(x) for x in pred]
    n = len(g)
    exact = [a == b for a, b in zip(g, p)]
    presence = [(a is None) == (b is None) for a, b in zip(g, p)]
    with_gold = [e for e, a in zip(exact, g) if a is not None]
    return {
        "n": n,
        "exact_match": sum(exact) / n if n else 0.0,
        "presence_agreement": sum(presence) / n if n else 0.0,
        "n_gold_present": len(with_gold),
        "exact_match_gold_present": sum(with_gold) / len(with_gold) if with_gold else None,
    }
