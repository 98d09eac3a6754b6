"""Stage 4: anything still low is left for a human (`needs_review`, listed by GET /v1/review), and
whatever a deadline interrupted is settled here too."""

from __future__ import annotations

from collections.abc import Sequence

from server.routing.answer import Answer, prompt_version_of
from server.routing.context import RoutingContext
from server.routing.job import Job
from server.routing.labels import null_output
from server.routing.rules import answered_by_label


def settle_low(ctx: RoutingContext, job: Job) -> None:
    """Nothing more will be tried: a still-low answer (or one with other reasons) goes to a human."""
    assert job.answer is not None
    low = ctx.low_fields(job.answer.confidence)
    if not low and not job.reasons:
        ctx.ledger.settle(job, "local+review" if job.reviewed else "local")
        return
    reasons = {**low, **{k: v for k, v in job.reasons.items() if k not in low}}
    ctx.ledger.settle(job, "human", needs_review=True, reasons=reasons)


def finish_at_deadline(ctx: RoutingContext, jobs: Sequence[Job], timeout_s: float) -> None:
    """A settled ticket keeps its result; one holding an answer keeps it for review (reason
    `deadline`); one without any answer gets null labels. Both go to a human."""
    detail = f"no final answer within {timeout_s:g}s"
    for job in jobs:
        if job.settled:
            continue
        if job.answer is None:
            engine = ctx.engines[job.choice.profile]
            job.answer = Answer.without_text(
                output=null_output(ctx.taxonomy),
                confidence={f.name: None for f in ctx.taxonomy.label_fields},
                answered_by=answered_by_label(engine.info),
                model=engine.info,
                prompt_version=prompt_version_of(engine),
            ).only(job.ticket.fields, ctx.taxonomy)
            reasons: dict[str, object] = {"deadline": detail}
        else:
            reasons = {**job.reasons, **ctx.low_fields(job.answer.confidence), "deadline": detail}
        ctx.ledger.settle(job, "human", needs_review=True, reasons=reasons)
