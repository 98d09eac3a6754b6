"""Stage 3: a ticket still low, with the fallback enabled and available, goes to
`HostedFallback.classify`. A valid answer is the result (`hosted`; its confidence is the provider's,
never another hop). A partly valid one keeps its valid labels (the rest from the local answer) and
is flagged for review. Unavailable, or nothing valid: the cache is asked once more (a concurrent
request may have answered the same ticket meanwhile), else the ticket goes to a human."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from server.results import label_of, set_label
from server.routing.answer import Answer
from server.routing.context import RoutingContext
from server.routing.job import Job
from server.routing.labels import label_fields_of
from server.routing.stages.cache import rescue_from_cache
from server.routing.stages.human import settle_low

if TYPE_CHECKING:
    from server.fallback import HostedResult

log = logging.getLogger(__name__)

MAX_DETAIL_CHARS = 300


def _detail(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


async def ask_hosted(ctx: RoutingContext, jobs: Sequence[Job]) -> None:
    if not jobs:
        return
    if not ctx.hosted_enabled:
        for job in jobs:
            settle_low(ctx, job)
        return
    await asyncio.gather(*(_hosted_one(ctx, job) for job in jobs))


async def _hosted_one(ctx: RoutingContext, job: Job) -> None:
    from server.egress import capture
    from server.fallback import HostedUnavailable

    assert ctx.hosted is not None and job.answer is not None
    job.hosted_sent = capture()  # this ticket's task: its hosted request bodies, for the audit
    previous = label_fields_of(job.answer.output, ctx.taxonomy)
    try:
        if not ctx.hosted.available:
            raise HostedUnavailable("breaker_open")
        async with ctx.hosted_slots:
            result = await ctx.hosted.classify(job.ticket, previous)
    except HostedUnavailable as exc:
        job.reasons["fallback_unavailable"] = exc.reason
    except Exception as exc:  # noqa: BLE001 - the fallback never turns a ticket into a 5xx
        log.exception("hosted fallback raised")
        job.reasons["fallback_unavailable"] = f"error: {type(exc).__name__}"
    else:
        job.hosted_cost_usd += result.cost_usd
        _use_hosted(ctx, job, result)
        if job.settled:
            return
    if not await rescue_from_cache(ctx, job):
        settle_low(ctx, job)


def _use_hosted(ctx: RoutingContext, job: Job, result: HostedResult) -> None:
    """Settle the job on a (partly) valid hosted answer; leave it unsettled when nothing is usable."""
    local = job.answer
    assert local is not None
    labels = ctx.taxonomy.label_fields

    # The hosted model is asked for the full answer (the same prompt and schema for every request); only
    # the asked fields are kept, so a labels-only request gets labels-only from the hosted route too.
    # The answer carries the customer's personal data restored; the cache gets the redacted form.
    def hosted_answer(
        output: dict[str, object], redacted: dict[str, object], confidence: dict[str, float | None]
    ) -> Answer:
        return Answer.without_text(
            output=output,
            confidence=confidence,
            answered_by=f"hosted:{result.provider}:{result.model}",
            model=local.model,
            prompt_version=local.prompt_version,
            truncated=local.truncated,
            prompt_tokens=result.input_tokens,
            completion_tokens=result.output_tokens,
            cache_output=redacted,
        ).only(job.ticket.fields, ctx.taxonomy)

    confidence = {spec.name: result.confidence.get(spec.name) for spec in labels}
    if result.valid:
        job.answer = hosted_answer(result.output, result.redacted_output, confidence)
        ctx.ledger.settle(job, "hosted")
        return
    job.reasons["hosted_invalid"] = _detail("; ".join(result.errors) or "answer failed validation")
    valid = {spec.name for spec in labels if label_of(result.output, spec.name) in spec.values}
    if not valid:  # nothing usable: as if the hosted model had not answered
        return
    # Keep the hosted answer's valid part; a label it got wrong falls back to the local answer.
    output = copy.deepcopy(result.output)
    redacted = copy.deepcopy(result.redacted_output)
    local_low = ctx.low_fields(local.confidence)
    for spec in labels:
        if spec.name in valid:
            continue
        value = label_of(local.output, spec.name)
        set_label(output, spec.name, value, in_extracted_info=spec.in_extracted_info)
        set_label(redacted, spec.name, value, in_extracted_info=spec.in_extracted_info)
        confidence[spec.name] = local.confidence.get(spec.name)
        if spec.name in local_low:
            job.reasons[spec.name] = local.confidence.get(spec.name)
    job.answer = hosted_answer(output, redacted, confidence)
    ctx.ledger.settle(job, "hosted", needs_review=True, reasons=job.reasons)
