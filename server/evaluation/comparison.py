"""The candidate-vs-baseline table the eval prints and writes (comparison.md, gate.json's `comparison`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.records import EvalSummary, SummaryLike

if TYPE_CHECKING:
    from server.evaluation.gate import GateVerdict

_FIELD_METRICS = ("accuracy", "macro_f1", "ece")
_LABEL_METRICS = ("precision", "recall", "f1")


def _num(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _delta(c: float | None, b: float | None) -> float | None:
    return c - b if c is not None and b is not None else None


def compare_table(
    candidate: SummaryLike, baseline: SummaryLike | None, field: str = "category"
) -> list[dict[str, Any]]:
    """Rows `{field, label, metric, candidate, baseline, delta}`: accuracy, macro-F1 and ECE of every
    label field, then precision/recall/F1 per label of `field` (label None on field rows)."""
    cand = EvalSummary.coerce(candidate)
    base = EvalSummary.coerce(baseline) if baseline is not None else EvalSummary()
    keys = [k for k in cand.keys() if k.endswith("_accuracy")] + [
        k for k in base.keys() if k.endswith("_accuracy") and k not in cand
    ]
    rows: list[dict[str, Any]] = []
    for fname in (k.removesuffix("_accuracy") for k in keys):
        for metric in _FIELD_METRICS:
            c, b = cand.metric(f"{fname}_{metric}"), base.metric(f"{fname}_{metric}")
            if c is None and b is None:
                continue  # the field is not in this data set
            rows.append(
                {"field": fname, "label": None, "metric": metric, "candidate": c, "baseline": b, "delta": _delta(c, b)}
            )
    cand_lang, base_lang = cand.per_language or {}, base.per_language or {}
    for fname in cand_lang:
        for lang in sorted(set(cand_lang[fname]) | set(base_lang.get(fname, {}))):
            cm, bm = cand_lang[fname].get(lang) or {}, (base_lang.get(fname) or {}).get(lang) or {}
            c, b = _num(cm, "accuracy"), _num(bm, "accuracy")
            rows.append(
                {
                    "field": fname,
                    "label": f"language {lang}",
                    "metric": "accuracy",
                    "candidate": c,
                    "baseline": b,
                    "delta": _delta(c, b),
                    "support": cm.get("n", bm.get("n")),
                }
            )
    cand_labels, base_labels = cand.labels_of(field) or {}, base.labels_of(field) or {}
    for label in list(cand_labels) + [lab for lab in base_labels if lab not in cand_labels]:
        cm, bm = cand_labels.get(label) or {}, base_labels.get(label) or {}
        for metric in _LABEL_METRICS:
            c, b = _num(cm, metric), _num(bm, metric)
            rows.append(
                {
                    "field": field,
                    "label": label,
                    "metric": metric,
                    "candidate": c,
                    "baseline": b,
                    "delta": _delta(c, b),
                    "support": cm.get("support", bm.get("support")),
                }
            )
    return rows


def comparison_markdown(rows: list[dict[str, Any]], verdict: GateVerdict | None = None) -> str:
    """The comparison (and the checks) as Markdown for the report folder."""

    def fmt(v: Any, signed: bool = False) -> str:
        if v is None:
            return "—"
        return f"{v:+.3f}" if signed else f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = [
        "# Candidate vs baseline",
        "",
        "| field | label | metric | candidate | baseline | delta |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['field']} | {r['label'] or ''} | {r['metric']} | {fmt(r['candidate'])} | {fmt(r['baseline'])} | {fmt(r['delta'], True)} |"
        for r in rows
    ]
    if verdict is not None:
        lines += ["", "## Gate", "", "| check | passed | detail |", "|---|---|---|"]
        lines += [f"| {c.name} | {'yes' if c.passed else 'no'} | {c.detail} |" for c in verdict.checks]
        lines += ["", f"**{verdict.line()}**"]
    return "\n".join(lines) + "\n"
