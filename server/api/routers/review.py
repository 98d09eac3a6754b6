"""GET /v1/review: stored results that need a person, oldest first, until feedback resolves them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from sqlalchemy.exc import SQLAlchemyError

from server.api.deps import ReviewerDep, SessionDep, TaxonomyDep
from server.api.errors import ApiError, database_unavailable, error_responses
from server.api.openapi import review_reasons
from server.api.protocol import ReviewQueueOut
from server.store import audit
from server.store import repository as repo

router = APIRouter(prefix="/v1", tags=["review"])
# The largest integer SQL stores take (SQLite INTEGER, BIGINT): a larger offset would fail in the driver.
MAX_OFFSET = 2**63 - 1


@router.get("/review", response_model=ReviewQueueOut, responses=error_responses(401, 403, 422, 429, 503))
def review_queue(
    session: SessionDep,
    taxonomy: TaxonomyDep,
    principal: ReviewerDep,
    reason: str | None = Query(
        default=None,
        description="Only items with this reason: a label field, hosted_invalid, deadline or fallback_unavailable "
        "(the OpenAPI document lists the served taxonomy's).",
    ),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    """Results with `needs_review` and no feedback yet. POST /v1/feedback for the ticket resolves an item."""
    allowed = review_reasons(taxonomy)
    if reason is not None and reason not in allowed:
        raise ApiError(422, "invalid_request", f"unknown reason {reason!r}; allowed: {', '.join(allowed)}")
    try:
        rows, total = repo.review_queue(session, reason=reason, limit=limit, offset=offset, scope=principal.scope)
        # Who read which tickets' text: a review read shows ticket bodies' answers to a person.
        audit.record(
            session,
            principal,
            "review_read",
            detail={"request_ids": [row.request_id for row in rows], "reason": reason, "offset": offset},
        )
    except SQLAlchemyError as exc:
        raise database_unavailable(exc) from exc
    items = [
        {
            "request_id": row.request_id,
            "ticket_id": row.ticket_id,
            "created_at": row.created_at,
            "route": row.route,
            "reasons": row.review_reasons or {},
            "prediction": row.prediction,
            "confidence": row.confidence,
            "engine": row.engine,
        }
        for row in rows
    ]
    return {"items": items, "total": total, "limit": limit, "offset": offset}
