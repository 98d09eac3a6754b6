"""The regression gate: may a candidate model replace the baseline?

Both sides are `run_eval` summaries (`n`, `invalid_json`, `<field>_accuracy`, `<field>_macro_f1`,
`<field>_ece`, `per_label: {field: {label: {precision, recall, f1, support}}}`, `data_sha256`).
Every rule is one named `Check`; the verdict is "yes" only when all of them pass. A rule that
cannot be evaluated (a metric missing on either side) fails: a gate must not wave through what it
could not look at.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from server.records import EvalSummary, LabelMetrics, SummaryLike

# Float slack so that a drop of exactly the tolerance (0.9 - 0.88 = 0.0200000001...) passes.
_EPS = 1e-9


@dataclass(frozen=True)
class GateRules:
    # Candidate accuracy of `field` must be >= baseline - this (0 = not lower at all).
    min_category_accuracy_delta: float = 0.0
    # Every other label field's accuracy may drop by at most this (0.01 = 3 tickets of 300).
    max_accuracy_drop: float = 0.01
    # No label of `field` may lose more recall than this (0.02 = 2 points).
    max_per_label_drop: float = 0.02
    # No language's accuracy on any label field may drop by more than this ...
    max_language_drop: float = 0.05
    # ... among languages with at least this many rows (a 6-ticket slice moves 17 points per ticket).
    min_language_support: int = 10
    # Absolute: at most this many tickets without a valid JSON answer.
    max_invalid_json: int = 0
    # ECE of any label field may grow by at most this.
    max_ece_increase: float = 0.02
    # Every label field's accuracy must be >= the classical baseline's (server.evaluation.classical,
    # trained on `classical_train`) - this margin; a negative number turns the rule off.
    classical_margin: float = 0.0
    # Empty: the taxonomy's own `data/<taxonomy>/train.csv`, its `reviewed` rows where the file has a
    # label_source column (the tickets data), all rows otherwise (Banking77, CLINC150).
    classical_train: tuple[str, ...] = ()
    classical_label_sources: tuple[str, ...] = ("reviewed",)
    # The label field of the category-level rules; taxonomies other than `tickets` name it differently.
    field: str = "category"

    @property
    def classical(self) -> bool:
        return self.classical_margin >= 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class GateVerdict:
    proceed: bool
    checks: list[Check] = field(default_factory=list)

    def line(self) -> str:
        return f"Proceed with deployment: {'yes' if self.proceed else 'no'}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "yes" if self.proceed else "no",
            "proceed": self.proceed,
            "checks": [dataclasses.asdict(c) for c in self.checks],
        }


# -- rules ------------------------------------------------------------------------------------


def load_rules(path_or_dict: str | Path | dict[str, Any] | None) -> GateRules:
    """Rules from a YAML file or a dict; unknown keys and wrongly typed values raise ValueError."""
    if path_or_dict is None:
        return GateRules()
    if isinstance(path_or_dict, dict):
        raw: Any = path_or_dict
        where = "gate rules"
    else:
        p = Path(path_or_dict)
        if not p.is_file():
            raise ValueError(f"gate rules file not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{p}: not valid YAML: {exc}") from exc
        where = str(p)
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be a mapping of rule names to values")
    known = {f.name: f for f in dataclasses.fields(GateRules)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    return GateRules(**{k: _coerce_rule(where, k, v, known[k].type) for k, v in raw.items()})


def _coerce_rule(where: str, key: str, value: Any, type_name: Any) -> Any:
    # Annotations are strings under `from __future__ import annotations`.
    kind = str(type_name)
    if kind.startswith("tuple"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ValueError(f"{where}: {key} must be a list of strings, got {value!r}")
        return tuple(v.strip() for v in value)
    if kind == "str":
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: {key} must be a non-empty string, got {value!r}")
        return value.strip()
    # bool is an int subclass; `max_invalid_json: true` is a typo, not 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: {key} must be a number, got {value!r}")
    if kind == "int":
        if float(value) != int(value):
            raise ValueError(f"{where}: {key} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


# -- the gate ---------------------------------------------------------------------------------


def evaluate_gate(
    candidate: SummaryLike,
    baseline: SummaryLike | None,
    rules: GateRules = GateRules(),
    classical: SummaryLike | None = None,
) -> GateVerdict:
    """All checks of `rules`; without a baseline only the absolute ones (invalid JSON, classical baseline).
    `classical` is the classical baseline's summary on the same data (None: that check fails if required)."""
    return _judge(
        EvalSummary.coerce(candidate),
        EvalSummary.coerce(baseline) if baseline is not None else None,
        rules,
        EvalSummary.coerce(classical) if classical is not None else None,
    )


def _judge(
    candidate: EvalSummary, baseline: EvalSummary | None, rules: GateRules, classical: EvalSummary | None
) -> GateVerdict:
    checks = [_check_invalid_json(candidate, rules)]
    if baseline is not None:
        checks += [_check_same_data(candidate, baseline), _check_accuracy(candidate, baseline, rules)]
        checks += [
            _check_field_accuracy(candidate, baseline, name, rules)
            for name in _label_fields(candidate, baseline)
            if name != rules.field
        ]
        checks += [_check_per_label(candidate, baseline, rules), _check_languages(candidate, baseline, rules)]
        checks += [
            _check_ece(candidate, baseline, rules, name)
            for name in [rules.field, *(n for n in _label_fields(candidate, baseline) if n != rules.field)]
        ]
    if rules.classical:
        checks.append(_check_classical(candidate, classical, rules))
    return GateVerdict(proceed=all(c.passed for c in checks), checks=checks)


def _label_fields(*summaries: EvalSummary) -> list[str]:
    """Label fields with an accuracy on every summary (fields absent from the data are skipped)."""
    return [n for n in summaries[0].accuracy_fields() if all(s.metric(f"{n}_accuracy") is not None for s in summaries)]


def _check_invalid_json(candidate: EvalSummary, rules: GateRules) -> Check:
    invalid = candidate.metric("invalid_json")
    if invalid is None:
        return Check("invalid JSON", False, "candidate report has no invalid_json count")
    n = candidate.n if candidate.n is not None else "?"
    return Check(
        "invalid JSON", invalid <= rules.max_invalid_json, f"{int(invalid)} of {n} (max {rules.max_invalid_json})"
    )


def _check_same_data(candidate: EvalSummary, baseline: EvalSummary) -> Check:
    """Deltas between runs on different data mean nothing; `--limit` runs share the file hash, so n counts too."""
    c_sha, b_sha = candidate.data_sha256, baseline.data_sha256
    if c_sha and b_sha and c_sha != b_sha:
        return Check(
            "same data", False, f"data_sha256 differs: candidate {str(c_sha)[:12]}, baseline {str(b_sha)[:12]}"
        )
    c_n, b_n = candidate.n, baseline.n
    if c_n is not None and b_n is not None and c_n != b_n:
        return Check("same data", False, f"row counts differ: candidate {c_n}, baseline {b_n}")
    how = f"data_sha256 {str(c_sha)[:12]}" if c_sha and b_sha else "data_sha256 not on both reports; row counts equal"
    return Check("same data", True, f"{how}, n={c_n}")


def _check_accuracy(candidate: EvalSummary, baseline: EvalSummary, rules: GateRules) -> Check:
    name = f"{rules.field} accuracy"
    key = f"{rules.field}_accuracy"
    cand, base = candidate.metric(key), baseline.metric(key)
    if cand is None or base is None:
        return Check(
            name,
            False,
            f"{key} missing ({'candidate' if cand is None else 'baseline'}); set the gate's `field` for this taxonomy",
        )
    delta = cand - base
    passed = delta >= -rules.min_category_accuracy_delta - _EPS
    return Check(
        name,
        passed,
        f"{cand:.3f} vs {base:.3f} (delta {delta:+.3f}, allowed >= {-rules.min_category_accuracy_delta:+.3f})",
    )


def _check_field_accuracy(candidate: EvalSummary, baseline: EvalSummary, name: str, rules: GateRules) -> Check:
    cand, base = candidate.metric(f"{name}_accuracy"), baseline.metric(f"{name}_accuracy")
    assert cand is not None and base is not None  # _label_fields only yields fields both sides have
    delta = cand - base
    return Check(
        f"{name} accuracy",
        delta >= -rules.max_accuracy_drop - _EPS,
        f"{cand:.3f} vs {base:.3f} (delta {delta:+.3f}, allowed >= {-rules.max_accuracy_drop:+.3f})",
    )


def _check_languages(candidate: EvalSummary, baseline: EvalSummary, rules: GateRules) -> Check:
    name = "per-language accuracy"
    # A baseline without the key counts as "no language column" only when the candidate has none either.
    cand = candidate.per_language if "per_language" in candidate else None
    base = baseline.per_language if "per_language" in baseline else ({} if not cand else None)
    if not isinstance(cand, dict) or not isinstance(base, dict):
        return Check(
            name,
            False,
            f"no per-language metrics ({'candidate' if not isinstance(cand, dict) else 'baseline'}); evaluate on data with a language column",
        )
    if not cand and not base:
        return Check(name, True, "the data has no language column")
    compared, failing, worst = 0, [], None
    for fname in sorted(set(cand) & set(base)):
        for lang in sorted(set(cand[fname]) & set(base[fname])):
            c, b = cand[fname][lang], base[fname][lang]
            if min(int(c.get("n", 0)), int(b.get("n", 0))) < rules.min_language_support:
                continue
            compared += 1
            delta = float(c["accuracy"]) - float(b["accuracy"])
            if worst is None or delta < worst[2]:
                worst = (fname, lang, delta)
            if delta < -rules.max_language_drop - _EPS:
                failing.append(
                    f"{fname}/{lang} {float(c['accuracy']):.3f} vs {float(b['accuracy']):.3f} ({delta:+.3f})"
                )
    if compared == 0:
        return Check(name, False, f"no language with >= {rules.min_language_support} rows on both reports")
    if failing:
        return Check(name, False, f"dropped more than {rules.max_language_drop:.3f}: {', '.join(failing)}")
    assert worst is not None
    return Check(
        name,
        True,
        f"{compared} field/language slices (n >= {rules.min_language_support}); largest change {worst[0]}/{worst[1]} {worst[2]:+.3f}",
    )


def _check_classical(candidate: EvalSummary, classical: EvalSummary | None, rules: GateRules) -> Check:
    name = "beats classical baseline"
    if classical is None:
        return Check(
            name, False, "no classical baseline report on this data (set classical_margin < 0 to turn the rule off)"
        )
    fields = _label_fields(candidate, classical)
    if not fields:
        return Check(name, False, "no label field on both the candidate's and the classical baseline's report")
    parts, passed = [], True
    for f in fields:
        cand, base = candidate.metric(f"{f}_accuracy"), classical.metric(f"{f}_accuracy")
        assert cand is not None and base is not None
        ok = cand >= base - rules.classical_margin - _EPS
        passed &= ok
        parts.append(f"{f} {cand:.3f} vs {base:.3f}{'' if ok else ' (LOWER)'}")
    return Check(name, passed, "; ".join(parts))


def per_label(summary: SummaryLike, field_name: str) -> LabelMetrics | None:
    """The per-label metrics of one field, from a summary (`per_label`) or a report.json (`fields`)."""
    return EvalSummary.coerce(summary).labels_of(field_name)


def _check_per_label(candidate: EvalSummary, baseline: EvalSummary, rules: GateRules) -> Check:
    name = f"{rules.field} per-label recall"
    cand, base = candidate.labels_of(rules.field), baseline.labels_of(rules.field)
    if cand is None or base is None:
        return Check(
            name, False, f"no per-label metrics for {rules.field} ({'candidate' if cand is None else 'baseline'})"
        )
    drops: list[tuple[str, float, float]] = []
    compared = 0
    for label in sorted(set(cand) & set(base)):
        c, b = cand[label], base[label]
        # A label absent from the data (support 0) has a meaningless recall of 0.
        if not c.get("support") or not b.get("support"):
            continue
        compared += 1
        drops.append((label, float(c.get("recall") or 0.0), float(b.get("recall") or 0.0)))
    failing = [(lab, c, b) for lab, c, b in drops if b - c > rules.max_per_label_drop + _EPS]
    if compared == 0:
        return Check(name, False, "no label with support on both reports")
    if failing:
        worst = ", ".join(
            f"{lab} {c:.3f} vs {b:.3f} ({c - b:+.3f})" for lab, c, b in sorted(failing, key=lambda t: t[1] - t[2])
        )
        return Check(name, False, f"dropped more than {rules.max_per_label_drop:.3f}: {worst}")
    worst_label, worst_c, worst_b = min(drops, key=lambda t: t[1] - t[2])
    return Check(
        name,
        True,
        f"{compared} labels compared; largest change {worst_label} {worst_c - worst_b:+.3f} (allowed drop {rules.max_per_label_drop:.3f})",
    )


def _check_ece(candidate: EvalSummary, baseline: EvalSummary, rules: GateRules, field: str) -> Check:
    name = f"{field} ECE"
    key = f"{field}_ece"
    cand, base = candidate.metric(key), baseline.metric(key)
    if cand is None and base is None:
        return Check(name, True, "no confidences on either report")
    if cand is None or base is None:
        return Check(name, False, f"{key} missing ({'candidate' if cand is None else 'baseline'})")
    delta = cand - base
    return Check(
        name,
        delta <= rules.max_ece_increase + _EPS,
        f"{cand:.3f} vs {base:.3f} (delta {delta:+.3f}, allowed <= {rules.max_ece_increase:+.3f})",
    )


__all__ = ["Check", "GateRules", "GateVerdict", "evaluate_gate", "load_rules", "per_label"]
