"""The deployment's OpenAPI document: the served taxonomy's vocabularies and the settings' limits, for
every shipped taxonomy (the schemathesis run of test_openapi_contract.py covers the default one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.api.openapi import review_reasons
from server.taxonomy import load_taxonomy
from tests.api.conftest import make_app

TAXONOMIES = sorted(p.stem for p in (Path(__file__).parents[2] / "server" / "taxonomies").glob("*.yaml"))


def document(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    # No lifespan needed: the document is built from the routes, the settings and the taxonomy.
    r = TestClient(make_app(tmp_path, **overrides)).get("/openapi.json")
    assert r.status_code == 200, r.text
    return r.json()


def test_the_default_document_lists_the_tickets_vocabularies_and_limits(tmp_path: Path) -> None:
    doc = document(tmp_path, api={"max_batch_items": 7, "max_history_items": 3})
    schemas = doc["components"]["schemas"]
    (reason,) = [p for p in doc["paths"]["/v1/review"]["get"]["parameters"] if p["name"] == "reason"]
    reasons = ["category", "priority", "sentiment", "hosted_invalid", "deadline", "fallback_unavailable"]
    assert reason["schema"]["enum"] == reasons
    feedback = schemas["FeedbackIn"]["properties"]
    assert feedback["category"]["anyOf"][0]["enum"] == ["Technical", "Billing", "Sales", "General"]
    labels = feedback["labels"]["anyOf"][0]
    assert labels["additionalProperties"] is False and labels["properties"]["sentiment"]["enum"][0] == "positive"
    assert schemas["BatchIn"]["properties"]["tickets"]["maxItems"] == 7
    assert schemas["TicketIn"]["properties"]["previous_interactions"]["maxItems"] == 3
    assert {alt["required"][0] for alt in schemas["TicketIn"]["anyOf"]} == {"subject", "body"}


@pytest.mark.parametrize("name", TAXONOMIES)
def test_every_taxonomy_gets_a_document_of_its_own(tmp_path: Path, name: str) -> None:
    taxonomy = load_taxonomy(name)
    doc = document(tmp_path, taxonomy=name)
    feedback = doc["components"]["schemas"]["FeedbackIn"]
    fields = {f.name for f in (*taxonomy.labels, *taxonomy.extracted_info)}
    assert set(feedback["properties"]["labels"]["anyOf"][0]["properties"]) == fields
    assert {"category", "priority"} & set(feedback["properties"]) == {"category", "priority"} & fields
    # Every way to satisfy "a correction or a comment" is a property the API takes.
    for alternative in feedback["anyOf"]:
        assert alternative["required"][0] in feedback["properties"]
    (reason,) = [p for p in doc["paths"]["/v1/review"]["get"]["parameters"] if p["name"] == "reason"]
    assert reason["schema"]["enum"] == review_reasons(taxonomy)


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/v1/classify", "post", {"200", "400", "401", "403", "413", "422", "429", "502", "503", "504"}),
        ("/v1/batch", "post", {"200", "400", "401", "403", "413", "422", "429", "503"}),
        ("/v1/feedback", "post", {"201", "400", "401", "403", "404", "413", "422", "429", "503"}),
        ("/v1/review", "get", {"200", "401", "403", "422", "429", "503"}),
        ("/health", "get", {"200", "503"}),
        ("/ready", "get", {"200", "503"}),
    ],
)
def test_every_status_an_operation_answers_is_documented(
    tmp_path: Path, path: str, method: str, statuses: set[str]
) -> None:
    responses = document(tmp_path)["paths"][path][method]["responses"]
    assert set(responses) == statuses
    for status in statuses - {"200", "201"}:
        assert responses[status]["description"], (path, status)
