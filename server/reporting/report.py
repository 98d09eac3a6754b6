"""`triage report`: the weekly failure-pattern review from the stored data, as JSON, Markdown and PNG plots.

Sections: the most overridden labels, confusion pairs (predicted -> corrected) from feedback, low-confidence
clusters (by category x language, and by shared keywords), accuracy per language, drift against the window
before, routes and cost, latency percentiles.

Ticket text is opened with the data key for language detection and keyword clusters, in memory only. The
report shows no ticket text, only cluster keywords, and a keyword must occur in at least `KEYWORD_MIN_DOCS`
tickets: a name, an e-mail address or an account number of one customer cannot become a keyword."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from server.drift import drift
from server.reporting.data import LABEL_FIELDS, ResultRow, load_results
from server.reporting.stats import percentile, wilson
from server.routing.language import detect_language

__all__ = ["KEYWORD_MIN_DOCS", "WeeklyReport", "weekly_report"]

log = logging.getLogger(__name__)

KEYWORD_MIN_DOCS = 3
TOP = 10
# Keywords are words of letters only (no digits: ids, amounts, dates, codes never qualify).
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"


@dataclass(frozen=True)
class WeeklyReport:
    """Everything the Markdown and the plots show; `data` is the --json document."""

    data: dict[str, Any]
    # For the plots only (counts, never text).
    confusion: dict[str, dict[tuple[str, str], int]]
    latencies: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return self.data


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _overrides(rows: Sequence[ResultRow]) -> tuple[list[dict[str, Any]], dict[str, dict[tuple[str, str], int]]]:
    reviewed: Counter[tuple[str, str]] = Counter()
    overridden: Counter[tuple[str, str]] = Counter()
    confusion: dict[str, Counter[tuple[str, str]]] = {f: Counter() for f in LABEL_FIELDS}
    for r in rows:
        for name, review in (r.review or {}).items():
            label = review.predicted if review.predicted is not None else "(none)"
            reviewed[(name, label)] += 1
            if review.corrected is not None:
                overridden[(name, label)] += 1
                confusion[name][(label, review.corrected)] += 1
    ranked = sorted(overridden, key=lambda k: (-overridden[k], -reviewed[k], k))
    most = [
        {
            "field": name,
            "label": label,
            "reviewed": reviewed[(name, label)],
            "overridden": overridden[(name, label)],
            "override_rate": overridden[(name, label)] / reviewed[(name, label)],
        }
        for name, label in ranked[:TOP]
    ]
    return most, {f: dict(c) for f, c in confusion.items()}


def _confusion_pairs(confusion: Mapping[str, Mapping[tuple[str, str], int]]) -> list[dict[str, Any]]:
    pairs = [(name, p, c, n) for name, counts in confusion.items() for (p, c), n in counts.items()]
    pairs.sort(key=lambda x: (-x[3], x[0], x[1], x[2]))
    return [{"field": f, "predicted": p, "corrected": c, "count": n} for f, p, c, n in pairs[: TOP * 2]]


def _is_low(row: ResultRow, thresholds: Mapping[str, float], default: float) -> bool:
    return any(c is None or c < thresholds.get(name, default) for name, c in row.confidence.items())


def _keyword_clusters(texts: Sequence[str], k_max: int = 5) -> list[dict[str, Any]]:
    """k-means over TF-IDF of the low-confidence tickets; each cluster's size and top shared keywords."""
    if len(texts) < 2 * KEYWORD_MIN_DOCS:
        return []
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(
        token_pattern=TOKEN_PATTERN, lowercase=True, min_df=KEYWORD_MIN_DOCS, stop_words="english"
    )
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:  # no word occurs in enough tickets
        return []
    k = max(1, min(k_max, len(texts) // (2 * KEYWORD_MIN_DOCS)))
    model = KMeans(n_clusters=k, n_init=10, random_state=0).fit(matrix)
    words = vectorizer.get_feature_names_out()
    labels = model.labels_
    doc_words = matrix > 0
    out: list[dict[str, Any]] = []
    for c in range(k):
        members = [i for i, label in enumerate(labels) if label == c]
        if not members:
            continue
        centre = model.cluster_centers_[c]
        ranked = [int(i) for i in centre.argsort()[::-1]]
        # A keyword of the cluster must itself be shared by KEYWORD_MIN_DOCS tickets of the cluster.
        counts = doc_words[members].sum(axis=0).A1
        keywords = [str(words[i]) for i in ranked if centre[i] > 0 and counts[i] >= KEYWORD_MIN_DOCS][:6]
        out.append({"size": len(members), "keywords": keywords})
    out.sort(key=lambda c: -int(c["size"]))
    return out


def weekly_report(
    session: Session,
    since: datetime,
    until: datetime,
    *,
    confidence_threshold: float = 0.5,
    field_thresholds: Mapping[str, float] | None = None,
) -> WeeklyReport:
    """The report over results created in [since, until); drift compares with the window of the same length
    just before. The confidence thresholds are the routing's (what counts as low confidence)."""
    rows, texts = load_results(session, since, until, text=True)
    done = [r for r in rows if r.status == "done"]
    reviewed = [r for r in done if r.review is not None]
    most_overridden, confusion = _overrides(done)

    languages = {r.id: detect_language(f"{texts[r.id][0]}\n{texts[r.id][1]}") for r in done}
    per_language: dict[str, dict[str, Any]] = {}
    for lang in sorted({languages[r.id] for r in done}):
        of_lang = [r for r in done if languages[r.id] == lang]
        rev = [r for r in of_lang if r.review is not None]
        kept = sum(not r.overridden for r in rev)
        acc = wilson(kept, len(rev))
        per_language[lang] = {
            "results": len(of_lang),
            "reviewed": len(rev),
            "kept": kept,
            "accuracy": acc.to_json() if acc is not None else None,
        }

    thresholds = dict(field_thresholds or {})
    low = [r for r in done if _is_low(r, thresholds, confidence_threshold)]
    by_cell: Counter[tuple[str, str]] = Counter((r.labels.get("category") or "(none)", languages[r.id]) for r in low)
    cells = [
        {"category": cat, "language": lang, "count": n}
        for (cat, lang), n in sorted(by_cell.items(), key=lambda x: (-x[1], x[0]))[:TOP]
    ]
    keyword_clusters = _keyword_clusters([f"{texts[r.id][0]}\n{texts[r.id][1]}" for r in low])

    routes: dict[str, dict[str, Any]] = defaultdict(lambda: {"count": 0, "cost_usd": 0.0})
    for r in done:
        route = routes[r.route or "unknown"]
        route["count"] += 1
        route["cost_usd"] += r.cost_usd or 0.0
    engines: Counter[str] = Counter(r.engine or "unknown" for r in done)
    cost_total = sum(r.cost_usd or 0.0 for r in rows)

    latencies = tuple(float(r.latency_ms) for r in done if r.latency_ms is not None)
    latency: dict[str, Any] = {
        "count": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "per_route": {},
    }
    for name in sorted(routes):
        values = [float(r.latency_ms) for r in done if (r.route or "unknown") == name and r.latency_ms is not None]
        latency["per_route"][name] = {
            "count": len(values),
            "p50_ms": percentile(values, 50),
            "p95_ms": percentile(values, 95),
        }

    window = until - since
    drift_report = drift(session, now=until, window=window, reference_window=window)

    kept_total = sum(not r.overridden for r in reviewed)
    accuracy = wilson(kept_total, len(reviewed))
    data: dict[str, Any] = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "totals": {
            "results": len(done),
            "failed": len(rows) - len(done),
            "reviewed": len(reviewed),
            "overridden": len(reviewed) - kept_total,
            "accuracy": accuracy.to_json() if accuracy is not None else None,
            "low_confidence": len(low),
        },
        "most_overridden": most_overridden,
        "confusion_pairs": _confusion_pairs(confusion),
        "low_confidence": {
            "threshold": confidence_threshold,
            "field_thresholds": thresholds,
            "by_category_language": cells,
            "keyword_clusters": keyword_clusters,
        },
        "per_language": per_language,
        "drift": drift_report.to_json(),
        "routes": {name: {**v, "share": _ratio(v["count"], len(done))} for name, v in sorted(routes.items())},
        "engines": dict(engines.most_common()),
        "cost": {
            "total_usd": cost_total,
            "per_result_usd": _ratio_f(cost_total, len(rows)),
        },
        "latency": latency,
    }
    return WeeklyReport(data, confusion, latencies)


def _ratio_f(a: float, b: int) -> float | None:
    return a / b if b else None
