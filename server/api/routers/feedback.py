"""POST /v1/feedback: a human correction stored next to the prediction it corrects."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError

from server.api.deps import ReviewerDep, SessionDep, TaxonomyDep
from server.api.errors import ApiError, error_responses
from server.api.protocol import FeedbackIn, FeedbackOut
from server.store import audit
from server.store import repository as repo
from server.taxonomy import Taxonomy, TaxonomyError

router = APIRouter(prefix="/v1", tags=["feedback"])


def _corrections(payload: FeedbackIn, taxonomy: Taxonomy) -> dict[str, Any]:
    corrections: dict[str, Any] = {}
    labels = dict(payload.labels or {})
    for name in ("category", "priority"):
        if getattr(payload, name) is not None:
            labels[name] = getattr(payload, name)
    extracted = dict(payload.extracted_info or {})
    known_extracted = {f.name for f in taxonomy.extracted_info}
    try:
        for name, value in labels.items():
            spec = taxonomy.field(name)
            if spec.in_extracted_info:
                extracted[name] = value
                continue
            taxonomy.validate_label(name, value)
            corrections[name] = value
        for name, extracted_value in extracted.items():
            if name not in known_extracted:
                raise TaxonomyError(
                    f"extracted_info has no field {name!r}; known: {', '.join(sorted(known_extracted))}"
                )
            if extracted_value is not None:
                taxonomy.validate_label(name, extracted_value)
    except KeyError as exc:
        raise ApiError(422, "invalid_request", f"unknown field {exc.args[0]!r} for taxonomy {taxonomy.key}") from exc
    except TaxonomyError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    if extracted:
        corrections["extracted_info"] = extracted
    if not corrections and not payload.comment:
        raise ApiError(422, "invalid_request", "feedback needs at least one correction or a comment")
    return corrections


@router.post(
    "/feedback",
    status_code=201,
    response_model=FeedbackOut,
    responses=error_responses(400, 401, 403, 404, 413, 422, 429, 503),
)
def feedback(payload: FeedbackIn, session: SessionDep, taxonomy: TaxonomyDep, principal: ReviewerDep) -> dict[str, Any]:
    corrections = _corrections(payload, taxonomy)
    try:
        # A scoped key sees only its scope's tickets: another tenant's ticket is "not found", like an unknown one.
        row = repo.get_latest_by_ticket_id(session, payload.ticket_id, scope=principal.scope)
        if row is None:
            raise ApiError(404, "not_found", f"no classification for ticket_id {payload.ticket_id!r}")
        fb = repo.add_feedback(
            session,
            classification=row,
            reviewer=payload.reviewer,
            comment=payload.comment,
            corrections=corrections,
            key_id=principal.key_id,
            key_role=principal.role if principal.key_id is not None else None,
        )
        audit.record(
            session,
            principal,
            "feedback",
            ticket_id=row.ticket_id,
            target=row.request_id,
            detail={"feedback_id": fb.id, "fields": sorted(corrections)},
        )
    except SQLAlchemyError as exc:
        raise ApiError(503, "database_unavailable", f"database unavailable: {type(exc).__name__}") from exc
    return {
        "feedback_id": fb.id,
        "ticket_id": row.ticket_id,
        "request_id": row.request_id,
        "corrections": corrections,
        "original": row.prediction,
    }
