"""deploy/prometheus/alerts.yml and deploy/grafana/triage.json against the metrics the server really exports.

promtool is not installable from PyPI; every expression is parsed by promql-parser (the Prometheus grammar,
a Rust port) when it is installed, and in any case every `triage_` name must be a sample name of
server/observability/metrics.py, every label matcher and `by (...)` label one that metric carries."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.observability.metrics import exported_labels

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "triage.json"
NAME = re.compile(r"\btriage_[a-z0-9_]+\b")
# Labels Prometheus adds at scrape time.
TARGET_LABELS = frozenset({"instance", "job"})
# The Grafana variables of the dashboard, as the values Grafana substitutes.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$variant": ".*", "$field": ".*"}

REQUIRED_ALERTS = {
    "TriageAccuracyBelowTarget": "< 0.90",
    "TriageLatencyP95OverSLO": "histogram_quantile(0.95",
    "TriageErrorRateHigh": "> 0.01",
    "TriageDrift": "> 0.2",
    "TriageHostedFallbackSpike": 'route="hosted"',
    "TriageQueueSaturated": "triage_queue_capacity",
    "TriageHostedBreakerOpen": 'state="open"',
    "TriageJobBacklogStuck": "triage_job_oldest_queued_age_seconds) > 3600",
}


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def grafana_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def selectors(expr: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """(metric name, matcher labels, `by` labels of the aggregations around it) of each selector, parsed."""
    promql_parser = pytest.importorskip("promql_parser")
    tree = promql_parser.parse(expr)  # raises on a syntax error
    found: list[tuple[str, list[str], list[str]]] = []
    by_stack: list[list[str]] = []

    def pre(node: Any) -> None:
        if isinstance(node, promql_parser.AggregateExpr):
            modifier = node.modifier
            is_by = modifier is not None and modifier.type == promql_parser.AggModifierType.By
            by_stack.append(list(modifier.labels) if is_by else [])
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr}"
            found.append((node.name, [m.name for m in node.matchers.matchers], list(by_stack[-1]) if by_stack else []))

    def post(node: Any) -> None:
        if isinstance(node, promql_parser.AggregateExpr):
            by_stack.pop()

    promql_parser.walk(tree, pre, post)
    yield from found


def check_expression(expr: str) -> None:
    known = exported_labels()
    names = NAME.findall(expr)
    assert names, f"no triage_ metric in {expr}"
    unknown = sorted(set(names) - set(known))
    assert not unknown, f"{unknown} are not exported by server/observability/metrics.py ({expr})"
    for name, matchers, by in selectors(expr):
        assert name in known
        assert set(matchers) <= known[name], f"{name} has no label {set(matchers) - known[name]} ({expr})"
        # `by` of the innermost aggregation: a label of the metric, or one the scrape adds.
        assert set(by) <= known[name] | TARGET_LABELS, f"{name} has no label {set(by) - known[name]} ({expr})"


def test_the_required_alerts_are_there_with_their_thresholds() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for alert, must_contain in REQUIRED_ALERTS.items():
        assert alert in rules, f"missing alert {alert}"
        assert must_contain in rules[alert]["expr"], f"{alert}: expected {must_contain!r} in its expression"
    for rule in rules.values():
        assert set(rule) >= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"} and rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_expression_parses_and_names_real_metrics(rule: dict[str, Any]) -> None:
    check_expression(rule["expr"])


@pytest.mark.parametrize("expr", dashboard_exprs())
def test_every_dashboard_query_parses_and_names_real_metrics(expr: str) -> None:
    check_expression(grafana_to_promql(expr))


def test_the_dashboard_is_provisionable_and_covers_the_metrics() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"] and isinstance(doc["schemaVersion"], int)
    assert "id" not in doc or doc["id"] is None  # a provisioned dashboard must not carry a database id
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    used = {name for expr in dashboard_exprs() for name in NAME.findall(expr)}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    for needed in (
        "triage_classification_duration_seconds", "triage_routes", "triage_classification_errors",
        "triage_classification_cost_usd", "triage_confidence", "triage_queue_depth", "triage_queue_wait_seconds",
        "triage_batch_size", "triage_model_seconds", "triage_tokens", "triage_cache_lookups", "triage_hosted_calls",
        "triage_hosted_breaker_state", "triage_review_field_accuracy", "triage_review_override_rate",
        "triage_drift_psi", "triage_auth_refusals", "triage_invalid_outputs", "triage_job_tickets", "triage_jobs",
        "triage_job_oldest_queued_age_seconds",
    ):  # fmt: skip
        assert needed in families, f"the dashboard shows nothing of {needed}"


def test_the_checker_catches_a_wrong_name_and_a_wrong_label() -> None:
    with pytest.raises(AssertionError, match="not exported"):
        check_expression("sum(rate(triage_routs_total[5m]))")
    with pytest.raises(AssertionError, match="has no label"):
        check_expression('sum(rate(triage_routes_total{rout="hosted"}[5m]))')
    with pytest.raises(AssertionError, match="has no label"):
        check_expression("sum by (field) (rate(triage_routes_total[5m]))")
    promql_parser = pytest.importorskip("promql_parser")
    with pytest.raises(Exception):  # noqa: B017, PT011 - the parser's own error type
        promql_parser.parse("sum(rate(triage_routes_total[5m])")
