"""The routing pipeline: which model answers a ticket, and what happens when it is unsure.

Per batch of tickets (one API request), in stages so that each engine still sees one batch:

0. cache     an exact or near-duplicate answer of the serving configuration  -> route `cache`
1. local     the engine the rule table picks (`routing.rules`); the backup engine when that one
             is unavailable or overloaded. Every label confident (>= its threshold) -> `local`
2. review    a low ticket is re-run on the same engine with the review prompt (a `ReviewInput`
             with the first answer's labels and the low fields) when `routing.review` and the
             engine supports it. Confident now -> `local+review`; else the more confident answer
3. hosted    still low, fallback enabled and available -> `HostedFallback.classify`. A valid
             answer is the result (`hosted`; its confidence is the provider's, never another hop).
             A partly valid one keeps its valid labels (the rest from the local answer) and is
             flagged. Unavailable / nothing valid -> the cache is asked once more (a concurrent
             request may have answered the same ticket meanwhile)
4. human     anything still low: `needs_review`, listed by GET /v1/review.

Each ticket is settled (its route decided) as soon as nothing more will happen to it, so a deadline
(`engine.request_timeout_s`) can cut the pipeline at any point: a settled ticket keeps its result,
one holding a local answer keeps it for review (reason `deadline`), one without any answer gets
null labels (route `human`, reason `deadline`). `review_reasons` maps each low label field to its
confidence and each other reason (`hosted_invalid`, `fallback_unavailable`, `deadline`) to a short
detail string.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.cache import CacheHit
from server.config import Settings
from server.engines.base import (
    Engine,
    EngineError,
    EngineOutput,
    EngineOverloaded,
    EngineUnavailable,
    ModelInfo,
    ReviewInput,
)
from server.prompts import TicketInput
from server.results import CACHEABLE_ROUTES, ROUTES, label_of, set_label
from server.routing.cache import ServiceCache
from server.routing.cost import EngineMeter
from server.routing.rules import DEFAULT_ENGINE, Choice, EngineRules, engine_label
from server.schema import output_layout
from server.taxonomy import Taxonomy

if TYPE_CHECKING:
    from server.fallback import HostedFallback, HostedResult

log = logging.getLogger(__name__)

MAX_DETAIL_CHARS = 300


@dataclass
class Answer:
    """One model's answer in the API's shape, with where it came from."""

    output: dict[str, Any]
    confidence: dict[str, float | None]
    engine: str  # e.g. transformers:tickets-smollm2-v1, hosted:openai:gpt-4o-mini
    model: ModelInfo  # the local model asked (provenance kept for hosted and cached answers too)
    prompt_version: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: bool = False
    raw_text: str | None = None

    @classmethod
    def from_engine(cls, out: EngineOutput, engine: Engine) -> Answer:
        return cls(
            output=out.output,
            confidence=dict(out.confidence),
            engine=engine_label(engine.info),
            model=engine.info,
            prompt_version=out.prompt_version,
            prompt_tokens=out.prompt_tokens,
            completion_tokens=out.completion_tokens,
            truncated=out.truncated,
            raw_text=out.raw_text,
        )

    def to_cache(self, route: str) -> dict[str, Any]:
        return {
            "output": self.output,
            "confidence": self.confidence,
            "engine": self.engine,
            "model": {
                "base": self.model.base,
                "adapter": self.model.adapter,
                "dtype": self.model.dtype,
                "engine": self.model.engine,
            },
            "prompt_version": self.prompt_version,
            "input_truncated": self.truncated,
            "route": route,
        }

    @classmethod
    def from_cache(cls, entry: dict[str, Any]) -> Answer:
        m = entry["model"]
        return cls(
            output=dict(entry["output"]),
            confidence=dict(entry["confidence"]),
            engine=str(entry["engine"]),
            model=ModelInfo(m["base"], m.get("adapter"), m.get("dtype", ""), m.get("engine", "")),
            prompt_version=str(entry["prompt_version"]),
            truncated=bool(entry.get("input_truncated", False)),
        )


@dataclass
class Job:
    """One ticket on its way through the pipeline."""

    ticket: TicketInput
    choice: Choice
    engine_name: str | None = None  # the rule-table engine that answered locally
    answer: Answer | None = None
    route: str | None = None  # set once the ticket is settled
    needs_review: bool = False
    reasons: dict[str, Any] = field(default_factory=dict)
    cache_hit: CacheHit | None = None
    error: BaseException | None = None  # no result: the API answers 429/502/503 for this ticket
    engine_cost_usd: float = 0.0
    engine_s: float = 0.0
    hosted_cost_usd: float = 0.0
    reviewed: bool = False

    @property
    def settled(self) -> bool:
        return self.route is not None or self.error is not None

    @property
    def cost_usd(self) -> float:
        return self.engine_cost_usd + self.hosted_cost_usd

    @property
    def cacheable(self) -> bool:
        return self.route in CACHEABLE_ROUTES and not self.needs_review and self.answer is not None


def label_value(output: dict[str, Any], taxonomy: Taxonomy, name: str) -> Any:
    taxonomy.field(name)  # an unknown field is a caller's bug: raise rather than answer None
    return label_of(output, name)


def label_fields_of(output: dict[str, Any], taxonomy: Taxonomy) -> dict[str, Any]:
    """The closed-set labels of an answer, in the answer's shape (what a reviewer needs to see)."""
    labels: dict[str, Any] = {}
    for spec in taxonomy.label_fields:
        set_label(labels, spec.name, label_of(output, spec.name), in_extracted_info=spec.in_extracted_info)
    return labels


def null_output(taxonomy: Taxonomy) -> dict[str, Any]:
    """The taxonomy's output shape with every field null (no answer)."""
    shape: dict[str, Any] = {}
    for slot in output_layout(taxonomy):
        target = shape.setdefault(slot.path[0], {}) if len(slot.path) == 2 else shape
        target[slot.name] = None
    return shape


def _detail(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


class Router:
    def __init__(
        self,
        settings: Settings,
        taxonomy: Taxonomy,
        engines: Mapping[str, Engine],
        *,
        cache: ServiceCache | None = None,
        hosted: HostedFallback | None = None,
    ):
        if DEFAULT_ENGINE not in engines:
            raise ValueError("the engines must include 'default'")
        known = {f.name for f in taxonomy.label_fields}
        unknown = set(settings.routing.field_thresholds) - known
        if unknown:
            raise ValueError(
                f"routing.field_thresholds names {', '.join(sorted(unknown))}, not label fields of taxonomy {taxonomy.key} "
                f"({', '.join(sorted(known))})"
            )
        self.settings = settings
        self.taxonomy = taxonomy
        self.engines = dict(engines)
        self.rules = EngineRules(settings.routing, self.engines)
        self.cache = cache
        self.hosted = hosted
        self.meters = {name: EngineMeter() for name in self.engines}
        profiles = settings.routing.engines
        self.rates = {
            name: (
                profiles[name].cost_per_cpu_second
                if name in profiles and profiles[name].cost_per_cpu_second is not None
                else settings.routing.cost_per_cpu_second
            )
            for name in self.engines
        }
        self._hosted_slots = asyncio.Semaphore(settings.routing.hosted_concurrency)
        self.routes: Counter[str] = Counter()
        self.backup_used: Counter[str] = Counter()  # engine name -> tickets it took over
        self.answered: Counter[str] = Counter()  # engine name -> first answers
        self.reviews = Counter({"asked": 0, "improved": 0, "failed": 0})

    # -- thresholds -------------------------------------------------------------------------------
    def threshold(self, name: str) -> float:
        return self.settings.routing.field_thresholds.get(name, self.settings.routing.confidence_threshold)

    def low_fields(self, confidence: Mapping[str, float | None]) -> dict[str, float | None]:
        """Label fields under their threshold (a null confidence counts as low), in taxonomy order."""
        low: dict[str, float | None] = {}
        for spec in self.taxonomy.label_fields:
            if spec.name not in confidence:
                continue
            c = confidence[spec.name]
            if c is None or c < self.threshold(spec.name):
                low[spec.name] = c
        return low

    def needs_review(self, confidence: Mapping[str, float | None]) -> bool:
        return bool(self.low_fields(confidence))

    def _margin(self, answer: Answer) -> float:
        """How far the least confident label is above its threshold (negative: below)."""
        margins = [(c if c is not None else 0.0) - self.threshold(name) for name, c in answer.confidence.items()]
        return min(margins) if margins else 0.0

    @property
    def hosted_enabled(self) -> bool:
        return self.hosted is not None and self.hosted.settings.enabled

    # -- the pipeline ---------------------------------------------------------------------------
    def plan(self, tickets: Sequence[TicketInput]) -> list[Job]:
        return [Job(t, self.rules.choose(t)) for t in tickets]

    async def run(self, jobs: Sequence[Job]) -> None:
        """Take every job as far as it goes; the caller may cancel this (deadline) at any await.

        The tickets of each chosen engine go through the stages together (one engine call per
        stage), independently of the other engines' tickets."""
        await self._from_cache(jobs)
        groups: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            if not job.settled:
                groups[job.choice.engine].append(job)
        results = await asyncio.gather(
            *(self._run_group(name, group) for name, group in groups.items()), return_exceptions=True
        )
        for (name, group), result in zip(groups.items(), results):
            if isinstance(result, BaseException):  # a bug in one group must not leave the others running
                log.error("routing of %d tickets on engine %r failed", len(group), name, exc_info=result)
                self._fail(
                    [j for j in group if not j.settled],
                    EngineError(f"routing failure: {type(result).__name__}: {result}"),
                )
        for job in jobs:  # every stage settles its jobs; this is the safety net
            if not job.settled and job.answer is not None:
                self._settle_low(job)

    async def _run_group(self, name: str, jobs: list[Job]) -> None:
        await self._first_pass(name, jobs)
        answered = [j for j in jobs if not j.settled and j.answer is not None]
        for job in answered:
            if not self.low_fields(job.answer.confidence):  # type: ignore[union-attr]
                self._settle(job, "local")
        await self._review([j for j in answered if not j.settled])
        await self._ask_hosted([j for j in answered if not j.settled])

    def finish_at_deadline(self, jobs: Sequence[Job], timeout_s: float) -> None:
        """Settle whatever the deadline interrupted."""
        detail = f"no final answer within {timeout_s:g}s"
        for job in jobs:
            if job.settled:
                continue
            if job.answer is None:
                engine = self.engines[job.choice.engine]
                job.answer = Answer(
                    output=null_output(self.taxonomy),
                    confidence={f.name: None for f in self.taxonomy.label_fields},
                    engine=engine_label(engine.info),
                    model=engine.info,
                    prompt_version=_prompt_version(engine),
                )
                job.route, job.needs_review, job.reasons = "human", True, {"deadline": detail}
            else:
                job.reasons.update(self.low_fields(job.answer.confidence))
                job.reasons["deadline"] = detail
                job.route, job.needs_review = "human", True
            self.routes["human"] += 1

    # -- stage 0: cache ---------------------------------------------------------------------------
    async def _from_cache(self, jobs: Sequence[Job]) -> None:
        if self.cache is None or not self.cache.enabled:
            return

        def lookup() -> list[CacheHit | None]:
            return [self.cache.get(self.engines[j.choice.engine], j.ticket) for j in jobs]  # type: ignore[union-attr]

        hits = await asyncio.to_thread(lookup)
        for job, hit in zip(jobs, hits):
            if hit is not None:
                self._use_cache_hit(job, hit)

    def _use_cache_hit(self, job: Job, hit: CacheHit) -> bool:
        try:
            answer = Answer.from_cache(hit.result)
        except (KeyError, TypeError, ValueError) as exc:  # an entry of another shape: a miss
            log.warning("ignoring a cache entry of unexpected shape (%s)", type(exc).__name__)
            return False
        job.answer, job.cache_hit, job.needs_review, job.reasons = answer, hit, False, {}
        job.route = "cache"
        self.routes["cache"] += 1
        return True

    async def _rescue_from_cache(self, job: Job) -> bool:
        if self.cache is None or not self.cache.enabled:
            return False
        try:
            hit = await asyncio.to_thread(self.cache.get, self.engines[job.choice.engine], job.ticket)
        except Exception:  # noqa: BLE001 - the cache never breaks classification
            return False
        # The local (and any hosted) time spent before this hit stays charged to the ticket.
        return hit is not None and self._use_cache_hit(job, hit)

    # -- stage 1: local engines ---------------------------------------------------------------------
    async def _call(self, name: str, items: Sequence[TicketInput | ReviewInput], jobs: Sequence[Job]) -> list[Any]:
        meter = self.meters[name]
        mark = meter.enter(len(items))
        try:
            return list(await self.engines[name].classify(list(items)))
        finally:
            share = meter.leave(mark, len(items))
            for job in jobs:
                job.engine_s += share
                job.engine_cost_usd += share * self.rates[name]

    async def _first_pass(self, name: str, jobs: list[Job]) -> None:
        last: EngineError | None = None
        for candidate in self.rules.candidates(name):
            try:
                outs = await self._call(candidate, [j.ticket for j in jobs], jobs)
            except (EngineUnavailable, EngineOverloaded) as exc:
                if candidate != name or last is not None:
                    log.warning("backup engine %r failed too: %s", candidate, exc)
                last = exc
                continue
            except EngineError as exc:
                self._fail(jobs, exc)
                return
            except Exception as exc:  # an engine bug must still end as a stored failure
                log.exception("engine %r failed", candidate)
                self._fail(jobs, EngineError(f"engine failure: {type(exc).__name__}: {exc}"))
                return
            if candidate != name:
                log.info(
                    "engine %r unavailable (%s): %d tickets answered by backup %r", name, last, len(jobs), candidate
                )
                self.backup_used[candidate] += len(jobs)
            if len(outs) != len(jobs):
                self._fail(jobs, EngineError(f"engine returned {len(outs)} results for {len(jobs)} tickets"))
                return
            engine = self.engines[candidate]
            for job, out in zip(jobs, outs):
                if isinstance(out, EngineOutput):
                    job.answer, job.engine_name = Answer.from_engine(out, engine), candidate
                    self.answered[candidate] += 1
                else:
                    job.error = (
                        out if isinstance(out, BaseException) else EngineError(f"engine returned {type(out).__name__}")
                    )
            return
        self._fail(jobs, last or EngineUnavailable("no engine available"))

    @staticmethod
    def _fail(jobs: Iterable[Job], exc: BaseException) -> None:
        for job in jobs:
            job.error = exc

    # -- stage 2: review on the local engine ----------------------------------------------------------
    async def _review(self, jobs: Sequence[Job]) -> None:
        if not self.settings.routing.review:
            return
        groups: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            assert job.engine_name is not None
            if self.engines[job.engine_name].supports_review:
                groups[job.engine_name].append(job)
        await asyncio.gather(*(self._review_group(name, group) for name, group in groups.items()))

    async def _review_group(self, name: str, jobs: list[Job]) -> None:
        items = []
        for job in jobs:
            assert job.answer is not None
            low = self.low_fields(job.answer.confidence)
            items.append(ReviewInput(job.ticket, label_fields_of(job.answer.output, self.taxonomy), tuple(low)))
        self.reviews["asked"] += len(jobs)
        try:
            outs = await self._call(name, items, jobs)
        except Exception as exc:  # noqa: BLE001 - a failed review keeps the first answer
            log.warning("review on engine %r failed (%s): keeping the first answers", name, exc)
            self.reviews["failed"] += len(jobs)
            return
        engine = self.engines[name]
        for job, out in zip(jobs, outs):
            job.reviewed = True
            if not isinstance(out, EngineOutput):
                self.reviews["failed"] += 1
                continue
            reviewed = Answer.from_engine(out, engine)
            assert job.answer is not None
            if not self.low_fields(reviewed.confidence):
                job.answer = reviewed
                self.reviews["improved"] += 1
                self._settle(job, "local+review")
            elif self._margin(reviewed) > self._margin(job.answer):
                job.answer = reviewed  # still unsure, but less so

    # -- stage 3: hosted fallback --------------------------------------------------------------------
    async def _ask_hosted(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        if not self.hosted_enabled:
            for job in jobs:
                self._settle_low(job)
            return
        await asyncio.gather(*(self._hosted_one(job) for job in jobs))

    async def _hosted_one(self, job: Job) -> None:
        from server.fallback import HostedUnavailable

        assert self.hosted is not None and job.answer is not None
        previous = label_fields_of(job.answer.output, self.taxonomy)
        try:
            if not self.hosted.available:
                raise HostedUnavailable("breaker_open")
            async with self._hosted_slots:
                result = await self.hosted.classify(job.ticket, previous)
        except HostedUnavailable as exc:
            job.reasons["fallback_unavailable"] = exc.reason
            if not await self._rescue_from_cache(job):
                self._settle_low(job)
            return
        except Exception as exc:  # noqa: BLE001 - the fallback never turns a ticket into a 5xx
            log.exception("hosted fallback raised")
            job.reasons["fallback_unavailable"] = f"error: {type(exc).__name__}"
            if not await self._rescue_from_cache(job):
                self._settle_low(job)
            return
        job.hosted_cost_usd += result.cost_usd
        self._use_hosted(job, result)
        if job.settled:
            return
        if not await self._rescue_from_cache(job):
            self._settle_low(job)

    def _use_hosted(self, job: Job, result: HostedResult) -> None:
        assert job.answer is not None
        local = job.answer
        engine = f"hosted:{result.provider}:{result.model}"
        valid_labels = [
            spec.name
            for spec in self.taxonomy.label_fields
            if label_value(result.output, self.taxonomy, spec.name) in spec.values
        ]
        hosted_answer = Answer(
            output=result.output,
            confidence={spec.name: result.confidence.get(spec.name) for spec in self.taxonomy.label_fields},
            engine=engine,
            model=local.model,
            prompt_version=local.prompt_version,
            prompt_tokens=result.input_tokens,
            completion_tokens=result.output_tokens,
            truncated=local.truncated,
        )
        if result.valid:
            job.answer = hosted_answer
            job.reasons = {}
            self._settle(job, "hosted")
            return
        job.reasons["hosted_invalid"] = _detail("; ".join(result.errors) or "answer failed validation")
        if not valid_labels:  # nothing usable: as if the hosted model had not answered
            return
        # Keep the hosted answer's valid part; a label it got wrong falls back to the local answer.
        output = _deep_copy(result.output)
        confidence = dict(hosted_answer.confidence)
        for spec in self.taxonomy.label_fields:
            if spec.name in valid_labels:
                continue
            value = label_value(local.output, self.taxonomy, spec.name)
            target = output.setdefault("extracted_info", {}) if spec.in_extracted_info else output
            if isinstance(target, dict):
                target[spec.name] = value
            confidence[spec.name] = local.confidence.get(spec.name)
            if spec.name in self.low_fields(local.confidence):
                job.reasons[spec.name] = local.confidence.get(spec.name)
        hosted_answer.output, hosted_answer.confidence = output, confidence
        job.answer = hosted_answer
        job.route, job.needs_review = "hosted", True
        self.routes["hosted"] += 1

    # -- settling -----------------------------------------------------------------------------------
    def _settle(self, job: Job, route: str) -> None:
        job.route, job.needs_review = route, False
        self.routes[route] += 1

    def _settle_low(self, job: Job) -> None:
        """Nothing more will be tried: a still-low answer goes to a human."""
        assert job.answer is not None
        low = self.low_fields(job.answer.confidence)
        if not low and not job.reasons:
            self._settle(job, "local+review" if job.reviewed else "local")
            return
        job.reasons = {**low, **{k: v for k, v in job.reasons.items() if k not in low}}
        job.route, job.needs_review = "human", True
        self.routes["human"] += 1

    # -- stats ---------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        engines = {}
        for name, engine in self.engines.items():
            info = engine.info
            engines[name] = {
                "ready": engine.ready,
                "engine": engine_label(info),
                "model": {"base": info.base, "adapter": info.adapter, "dtype": info.dtype, "engine": info.engine},
                "first_answers": self.answered[name],
                "as_backup": self.backup_used[name],
                "busy_s": round(self.meters[name].busy_s, 3),
                "cost_per_cpu_second": self.rates[name],
                "stats": engine.stats(),
            }
        return {
            "routes": {route: self.routes[route] for route in ROUTES},
            "reviews": dict(self.reviews),
            "rules": [r.model_dump(exclude_none=True) for r in self.rules.rules],
            "backup": self.rules.backup,
            "engines": engines,
        }


def _prompt_version(engine: Engine) -> str:
    try:
        return engine.prompt_version
    except NotImplementedError:
        return "unknown"


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
