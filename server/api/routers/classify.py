"""POST /v1/classify (one ticket) and POST /v1/batch (many, results in order, per-item errors)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from server.api.deps import ClassifierDep, ServiceDep, SettingsDep
from server.api.errors import ApiError, error_responses, retry_after_header
from server.api.protocol import BatchIn, BatchOut, ClassificationOut, TicketIn
from server.auth.principal import Principal
from server.engines.base import EngineOverloaded
from server.fields import UnknownFields
from server.service import ClassificationService, Outcome, TicketRequest, over_limits
from server.store import audit

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["classification"])

# A batch answers per-ticket failures inside its 200, so only whole-request failures are its statuses.
CLASSIFY_ERRORS = error_responses(400, 401, 403, 413, 422, 429, 502, 503, 504)
BATCH_ERRORS = error_responses(400, 401, 403, 413, 422, 429, 503)


def _check(ticket: TicketIn, settings: Any) -> None:
    problem = over_limits(ticket.subject, ticket.body, ticket.previous_interactions, settings)
    if problem is not None:
        raise ApiError(problem.status, problem.error, problem.message)


def _echo_id(raw: Any) -> str | None:
    """The caller's ticket_id for a per-item error, if it is printable JSON text."""
    value = raw.get("ticket_id") if isinstance(raw, dict) else None
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _request(ticket: TicketIn, service: ClassificationService, principal: Principal) -> TicketRequest:
    try:
        fields = service.fields_for(ticket.fields)
    except UnknownFields as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    return TicketRequest(
        ticket.subject,
        ticket.body,
        tuple(ticket.previous_interactions),
        ticket.ticket_id,
        fields=fields,
        key_id=principal.key_id,
        scope=principal.scope,
    )


async def _audit(request: Request, principal: Principal, outcomes: Sequence[Outcome]) -> None:
    """One `classify` event per API call: who asked for which stored requests."""
    if not outcomes:
        return

    def write() -> None:
        with request.app.state.sessions() as session:
            audit.record(
                session,
                principal,
                "classify",
                ticket_id=outcomes[0].ticket_id if len(outcomes) == 1 else None,
                detail={"request_ids": [o.request_id for o in outcomes], "ticket_ids": [o.ticket_id for o in outcomes]},
            )

    try:
        await run_in_threadpool(write)
    except SQLAlchemyError:
        # The results are stored (with the key id on each row); failing the answer now would invite a
        # retry that classifies the tickets twice.
        log.exception("could not write the audit event of requests %s", [o.request_id for o in outcomes])


# exclude_unset: a field the request did not ask for is absent from the answer, not null.
@router.post(
    "/classify", response_model=ClassificationOut, response_model_exclude_unset=True, responses=CLASSIFY_ERRORS
)
async def classify(
    ticket: TicketIn, service: ServiceDep, settings: SettingsDep, principal: ClassifierDep, request: Request
) -> dict[str, Any]:
    _check(ticket, settings)
    (outcome,) = await service.classify_many([_request(ticket, service, principal)])
    await _audit(request, principal, [outcome])
    if outcome.result is None:
        headers = (
            {"Retry-After": retry_after_header(outcome.retry_after_s or 1.0)}
            if outcome.status == 429
            else {"Retry-After": "5"}
            if outcome.status == 503
            else None
        )
        raise ApiError(
            outcome.status,
            "classification_failed",
            outcome.error or "failed",
            {"ticket_id": outcome.ticket_id, "request_id": outcome.request_id},
            headers,
        )
    return outcome.result


@router.post("/batch", response_model=BatchOut, responses=BATCH_ERRORS)
async def batch(
    payload: BatchIn, service: ServiceDep, settings: SettingsDep, principal: ClassifierDep, request: Request
) -> dict[str, Any]:
    limit = settings.api.max_batch_items
    if len(payload.tickets) > limit:
        raise ApiError(413, "batch_too_large", f"batch has {len(payload.tickets)} tickets; the limit is {limit}")
    results: list[dict[str, Any] | None] = [None] * len(payload.tickets)
    valid: list[tuple[int, TicketRequest]] = []
    for i, raw in enumerate(payload.tickets):
        try:
            ticket = TicketIn.model_validate(raw)
            _check(ticket, settings)
            valid.append((i, _request(ticket, service, principal)))
        except ValidationError as exc:
            msg = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'ticket'}: {e['msg']}" for e in exc.errors()[:5])
            results[i] = {"ticket_id": _echo_id(raw), "error": {"status": 422, "message": msg}}
        except ApiError as exc:
            results[i] = {"ticket_id": _echo_id(raw), "error": {"status": exc.status, "message": exc.message}}
    if valid:
        outcomes = await service.classify_many([req for _, req in valid])
        await _audit(request, principal, outcomes)
        if all(o.status == 429 for o in outcomes):
            raise EngineOverloaded(max(o.retry_after_s or 1.0 for o in outcomes))
        for (i, _), outcome in zip(valid, outcomes):
            results[i] = outcome.result or {
                "ticket_id": outcome.ticket_id,
                "request_id": outcome.request_id,
                "error": {"status": outcome.status, "message": outcome.error},
            }
    return {"results": results}
