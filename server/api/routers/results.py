"""Reading a stored result back, and erasing a ticket.

GET /v1/results/{request_id} and GET /v1/tickets/{ticket_id} (role review) answer what a data subject or an
auditor asks: what was decided, by which model, adapter and prompt, how sure it was, which route it took,
why it needs review, and the feedback given on it. The ticket text is personal data and the answer
usually does not need it, so it is returned only on `?include_text=true`. Every read is audited
(`result_read`); a read that cannot be audited is not served.

DELETE /v1/tickets/{ticket_id} (role admin) erases the ticket's results, feedback, result-cache entries
and audit payloads, and answers how many of each; the `erasure` audit event keeps the counts, no text.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from server.api.deps import AdminDep, ReviewerDep, SessionDep
from server.api.errors import ApiError, database_unavailable, error_responses
from server.api.protocol import ErasureOut, StoredResultOut
from server.auth.principal import Principal
from server.cache import ServiceCache
from server.store import audit
from server.store import tickets as store
from server.store.models import Classification


class SharedPathRoute(APIRoute):
    """GET and DELETE /v1/tickets/{ticket_id} are two routes on one path; Starlette's 405 names only the
    first one's methods in `Allow`, so this lists every method the path serves."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            routes = scope["app"].router.routes
            allowed = sorted(
                {m for r in routes if isinstance(r, APIRoute) and r.path == self.path for m in r.methods or ()}
            )
            raise HTTPException(405, headers={"Allow": ", ".join(allowed)})
        await super().handle(scope, receive, send)


router = APIRouter(prefix="/v1", tags=["results"], route_class=SharedPathRoute)

# Ids as the classify API accepts them (ticket_id up to 128 characters); NUL is refused because
# PostgreSQL cannot compare it, which would otherwise be a 500.
NO_NUL = "^[^\\x00]+$"
TicketIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=NO_NUL)]
RequestIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL)]
IncludeText = Annotated[
    bool, Query(description="Also return the stored ticket text (subject, body, earlier messages): personal data.")
]


def _body(row: Classification, include_text: bool) -> dict[str, Any]:
    prediction = row.prediction
    reasoning = prediction.get("reasoning") if isinstance(prediction, dict) else None
    body: dict[str, Any] = {
        "request_id": row.request_id,
        "ticket_id": row.ticket_id,
        "status": row.status,
        "created_at": row.created_at,
        "completed_at": row.completed_at,
        "model": {"base": row.model_base, "adapter": row.model_adapter},
        "prompt_version": row.prompt_version,
        "taxonomy": row.taxonomy,
        "engine": row.engine,
        "route": row.route,
        "cache": row.cache_kind,
        "fields": row.fields,
        "prediction": prediction,
        "reasoning": reasoning if isinstance(reasoning, str) else None,
        "confidence": row.confidence,
        "needs_review": row.needs_review,
        "review_reasons": row.review_reasons,
        "input_truncated": row.input_truncated,
        "latency_ms": row.latency_ms,
        "cost_usd": row.cost_usd,
        "error": row.error,
        "variant": row.variant,
        "feedback": store.feedback_json(list(row.feedback)),
    }
    if include_text:
        body["text"] = {
            "subject": row.subject,
            "body": row.body,
            "previous_interactions": row.previous_interactions,
        }
    return body


def _audited_read(session: Session, principal: Principal, row: Classification, include_text: bool) -> None:
    audit.record(
        session,
        principal,
        "result_read",
        ticket_id=row.ticket_id,
        target=row.request_id,
        detail={"include_text": include_text},
    )


@router.get(
    "/results/{request_id}",
    response_model=StoredResultOut,
    response_model_exclude_none=False,
    responses=error_responses(401, 403, 404, 422, 503),
)
def read_result(
    request_id: RequestIdPath, principal: ReviewerDep, session: SessionDep, include_text: IncludeText = False
) -> dict[str, Any]:
    """One stored result by the `request_id` its classification answered with."""
    try:
        row = store.result_by_request_id(session, request_id, principal)
        if row is None:
            raise ApiError(404, "not_found", f"no result with request_id {request_id!r}")
        body = _body(row, include_text)
        _audited_read(session, principal, row, include_text)
    except SQLAlchemyError as exc:
        raise database_unavailable(exc) from exc
    return body


@router.get(
    "/tickets/{ticket_id}",
    response_model=StoredResultOut,
    responses=error_responses(401, 403, 404, 422, 503),
)
def read_ticket(
    ticket_id: TicketIdPath, principal: ReviewerDep, session: SessionDep, include_text: IncludeText = False
) -> dict[str, Any]:
    """The ticket's latest stored result, with the request ids of all its results (`history`)."""
    try:
        row = store.ticket_result(session, ticket_id, principal)
        if row is None:
            raise ApiError(404, "not_found", f"no result for ticket_id {ticket_id!r}")
        body = _body(row, include_text)
        body["history"] = [
            {"request_id": rid, "status": status} for rid, status in store.ticket_history(session, ticket_id, principal)
        ]
        _audited_read(session, principal, row, include_text)
    except SQLAlchemyError as exc:
        raise database_unavailable(exc) from exc
    return body


@router.delete(
    "/tickets/{ticket_id}",
    response_model=ErasureOut,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def erase_ticket(
    ticket_id: TicketIdPath, principal: AdminDep, session: SessionDep, request: Request
) -> dict[str, Any]:
    """Erase the ticket: its results, the feedback on them, its result-cache entries and the payloads of its
    audit events (what was sent to the hosted API). The audit events themselves stay, with counts and
    without text. A second DELETE answers 404."""
    cache: ServiceCache | None = getattr(request.app.state, "cache", None)
    try:
        texts = await run_in_threadpool(store.ticket_inputs, session, ticket_id, principal)
    except SQLAlchemyError as exc:
        raise database_unavailable(exc) from exc
    # The cache first: if it cannot be reached nothing is erased yet, and the same DELETE can be retried.
    forgotten = 0
    if cache is not None and texts:
        try:
            for ticket in texts:
                forgotten += await run_in_threadpool(cache.forget, ticket)
        except Exception as exc:  # noqa: BLE001 - any backend failure: nothing erased in the database yet
            raise ApiError(
                503,
                "cache_unavailable",
                f"the result cache could not be reached ({type(exc).__name__}); nothing was erased, retry",
                headers={"Retry-After": "5"},
            ) from exc
    try:
        counts = await run_in_threadpool(store.erase_ticket, session, ticket_id, principal, cache_entries=forgotten)
    except SQLAlchemyError as exc:
        raise database_unavailable(exc) from exc
    if counts is None:
        raise ApiError(404, "not_found", f"nothing stored for ticket_id {ticket_id!r}")
    return {"ticket_id": ticket_id, "erased": counts.to_json()}
