"""The OpenAPI document of one deployment: the static wire models plus what its settings and taxonomy decide.

The protocol models are the same for every taxonomy, but the values the API accepts are not: the review
reasons, the labels a correction may carry and the size limits come from the served taxonomy and the
settings. The handlers validate them (422/413 with a message); this module writes the same rules into
/openapi.json so that a request valid by the document is a request the API accepts.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.api.protocol import NO_NUL
from server.config import Settings
from server.fields import output_fields
from server.results import OTHER_REASONS
from server.taxonomy import FieldSpec, Taxonomy

JsonSchema = dict[str, Any]


def install_openapi(app: FastAPI, settings: Settings, taxonomy: Taxonomy) -> None:
    """Replace `app.openapi` with one that documents this deployment (built once, on first request)."""

    def openapi() -> JsonSchema:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            describe_deployment(document, settings, taxonomy)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe_deployment(document: JsonSchema, settings: Settings, taxonomy: Taxonomy) -> None:
    schemas: dict[str, JsonSchema] = document["components"]["schemas"]
    _review_reasons(document, taxonomy)
    _feedback_labels(schemas["FeedbackIn"], taxonomy)
    _branch(schemas["TicketIn"]["properties"]["previous_interactions"], "array")["maxItems"] = (
        settings.api.max_history_items
    )
    _branch(schemas["BatchIn"]["properties"]["tickets"], "array")["maxItems"] = settings.api.max_batch_items
    # `fields` names output fields of this taxonomy (anything else is a 422 naming it).
    _branch(schemas["TicketIn"]["properties"]["fields"], "array")["items"] = {
        "type": "string",
        "enum": list(output_fields(taxonomy)),
    }


def review_reasons(taxonomy: Taxonomy) -> list[str]:
    """What GET /v1/review?reason= accepts: the label fields and the other reasons."""
    return [f.name for f in taxonomy.label_fields] + list(OTHER_REASONS)


def _review_reasons(document: JsonSchema, taxonomy: Taxonomy) -> None:
    for parameter in document["paths"]["/v1/review"]["get"]["parameters"]:
        if parameter["name"] == "reason":
            # Optional: absent means every reason (a query string has no null to send).
            parameter["schema"] = {"type": "string", "enum": review_reasons(taxonomy), "title": "Reason"}


def _value_schema(spec: FieldSpec) -> JsonSchema:
    """A correction's value for this field: one of its labels, or any text for a free-text field."""
    if spec.is_label:
        return {"type": "string", "enum": list(spec.labels)}
    return {"type": "string", "pattern": NO_NUL}


def _feedback_labels(feedback: JsonSchema, taxonomy: Taxonomy) -> None:
    properties: dict[str, JsonSchema] = feedback["properties"]
    fields = {f.name: f for f in (*taxonomy.labels, *taxonomy.extracted_info)}
    for name in ("category", "priority"):
        if name in fields:
            _branch(properties[name], "string").update(_value_schema(fields[name]))
        else:
            # This taxonomy has no such field: the API refuses it, so the document does not offer it.
            del properties[name]
            feedback["anyOf"] = [alt for alt in feedback["anyOf"] if alt["required"] != [name]]
    labels = _branch(properties["labels"], "object")
    labels.pop("additionalProperties", None)
    labels.update(properties={name: _value_schema(spec) for name, spec in fields.items()}, additionalProperties=False)
    if not taxonomy.extracted_info:
        # Nothing to correct there, so it cannot be the one correction a feedback carries.
        feedback["anyOf"] = [alt for alt in feedback["anyOf"] if alt["required"] != ["extracted_info"]]
    extracted = _branch(properties["extracted_info"], "object")
    extracted.pop("additionalProperties", None)
    extracted.update(
        properties={spec.name: {"anyOf": [_value_schema(spec), {"type": "null"}]} for spec in taxonomy.extracted_info},
        additionalProperties=False,
    )


def _branch(prop: JsonSchema, json_type: str) -> JsonSchema:
    """The `json_type` alternative of an optional property (`anyOf: [..., {"type": "null"}]`) or the property."""
    alternatives: list[JsonSchema] = prop.get("anyOf", [prop])
    for alternative in alternatives:
        if alternative.get("type") == json_type:
            return alternative
    raise KeyError(f"no {json_type} schema in {prop}")
