"""PII redaction for everything that leaves the premises (the hosted-LLM fallback).

`Redactor.redact` replaces personal data in a set of texts (one ticket's subject, body and
history) with typed placeholders that are stable across those texts, and returns the mapping so
`Redactor.restore` can put the originals back into what the hosted model answers. Failure is
loud: any error inside analysis, or a payment-card number that survives, raises RedactionError
and the caller must not send the ticket.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import regex
from presidio_analyzer import AnalyzerEngine, RecognizerResult
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import ConflictResolutionStrategy, OperatorConfig
from presidio_anonymizer.entities import RecognizerResult as AnonymizerResult

from server.config import RedactionSettings
from server.privacy.cards import find_card_numbers
from server.privacy.engine import ANALYSIS_LANGUAGE, build_analyzer

# Presidio entity names are upper-case identifiers; a placeholder is "<" + entity + "_" + n + ">".
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)_(\d+)>")
# Name parts worth searching for on their own (shorter ones and particles are too ambiguous).
_MIN_NAME_PART = 3
_MIN_PROPAGATED = 3
_NAME_PART = regex.compile(r"\p{Lu}\p{Ll}{2,}")
_WARM_UP_TEXT = "Dear Anna Schmidt, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, +49 30 1234567."


class RedactionError(RuntimeError):
    """Redaction failed: the caller must NOT send the ticket."""


@dataclass
class Redacted:
    texts: list[str]
    mapping: dict[str, str]  # placeholder -> original value
    counts: dict[str, int]  # entity type -> number of replaced occurrences


@dataclass(frozen=True, order=True)
class _Span:
    start: int
    end: int
    entity: str = field(compare=False)
    score: float = field(compare=False)


def _resolve(results: Iterable[RecognizerResult]) -> list[_Span]:
    """Non-overlapping spans from overlapping detections.

    Overlapping detections form a cluster. When one detection covers the whole cluster it wins
    (a URL containing an e-mail, a card number containing a phone-like run); otherwise the
    cluster is replaced as one span labelled with the best-scoring detection, so no fragment
    of either value survives and no placeholder ends up nested in another.
    """
    spans = sorted(
        (_Span(r.start, r.end, r.entity_type, r.score) for r in results if r.end > r.start),
        key=lambda s: (s.start, -s.end),
    )
    clusters: list[list[_Span]] = []
    for span in spans:
        if clusters and span.start < max(s.end for s in clusters[-1]):
            clusters[-1].append(span)
        else:
            clusters.append([span])
    resolved = []
    for cluster in clusters:
        start, end = cluster[0].start, max(s.end for s in cluster)
        covering = [s for s in cluster if s.start == start and s.end == end]
        best = max(covering or cluster, key=lambda s: (s.score, s.end - s.start))
        resolved.append(_Span(start, end, best.entity, best.score))
    return resolved


def _free(spans: list[_Span], start: int, end: int) -> bool:
    return all(end <= s.start or start >= s.end for s in spans)


class Redactor:
    """Presidio analyzer + anonymizer built once; `redact` is safe to call from many threads."""

    def __init__(self, settings: RedactionSettings):
        try:
            self._analyzer: AnalyzerEngine = build_analyzer(settings)
            self._anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]  # presidio ships no annotations here
            # Recognisers load and regexes compile lazily on first use: do it now, single-threaded.
            self.redact([_WARM_UP_TEXT])
        except RedactionError:
            raise
        except Exception as exc:
            raise RedactionError(f"cannot build the PII redactor: {exc}") from exc

    # -- public API ------------------------------------------------------------------------------

    def redact(self, texts: Sequence[str]) -> Redacted:
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise RedactionError("redact() takes strings only")
        try:
            spans = [self._detect(t) for t in texts]
            spans = self._propagate(texts, spans)
            placeholders = self._placeholders(texts, spans)
            out = [self._anonymize(t, s, placeholders) for t, s in zip(texts, spans)]
        except Exception as exc:
            # The message carries no ticket text: it ends up in logs.
            raise RedactionError(f"PII analysis failed ({type(exc).__name__})") from exc
        for text in out:
            self.assert_safe(text)
        counts: Counter[str] = Counter()
        for text, text_spans in zip(texts, spans):
            for s in text_spans:
                counts[_entity_of(placeholders[text[s.start : s.end]])] += 1
        return Redacted(texts=out, mapping={p: v for v, p in placeholders.items()}, counts=dict(counts))

    def restore(self, value: Any, mapping: dict[str, str]) -> Any:
        """Put original values back wherever the hosted model echoed a placeholder.

        Walks dicts, lists and tuples; only str values change (dict keys are left alone). Unknown
        placeholder-like strings are left as they are.
        """
        if not mapping:
            return value

        def sub(s: str) -> str:
            return PLACEHOLDER.sub(lambda m: mapping.get(m.group(0), m.group(0)), s)

        def walk(v: Any) -> Any:
            if isinstance(v, str):
                return sub(v)
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            if isinstance(v, tuple):
                return tuple(walk(x) for x in v)
            return v

        return walk(value)

    def assert_safe(self, text: str) -> None:
        """Raise if a Luhn-valid 13-19 digit number (spaces/dashes allowed) is still in `text`."""
        if find_card_numbers(text):
            raise RedactionError("a payment-card number survived redaction")

    # -- steps -----------------------------------------------------------------------------------

    def _detect(self, text: str) -> list[_Span]:
        if not text:
            return []
        return _resolve(self._analyzer.analyze(text=text, language=ANALYSIS_LANGUAGE))

    @staticmethod
    def _known_values(texts: list[str], spans: list[list[_Span]]) -> dict[str, str]:
        """value -> entity for everything detected anywhere in this call, plus the parts of
        multi-word names, so "Anna" is caught in the body when "Anna Schmidt" signed it."""
        known: dict[str, str] = {}
        parts: dict[str, str] = {}
        for text, text_spans in zip(texts, spans):
            for s in text_spans:
                value = text[s.start : s.end]
                known.setdefault(value, s.entity)
                if s.entity == "PERSON":
                    for part in value.split():
                        if len(part) >= _MIN_NAME_PART and _NAME_PART.fullmatch(part):
                            parts.setdefault(part, "PERSON")
        for part, entity in parts.items():
            known.setdefault(part, entity)
        return known

    def _propagate(self, texts: list[str], spans: list[list[_Span]]) -> list[list[_Span]]:
        """Redact every other occurrence of a detected value, in every text of the call.

        A name found after "Dear" in the body is also removed from the subject where no cue
        announced it; values found by one recogniser in one text cannot leak from another.
        """
        known = {v: e for v, e in self._known_values(texts, spans).items() if len(v) >= _MIN_PROPAGATED}
        if not known:
            return spans
        alternation = "|".join(re.escape(v) for v in sorted(known, key=len, reverse=True))
        finder = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)")
        out = []
        for text, text_spans in zip(texts, spans):
            extra: list[Any] = []
            for m in finder.finditer(text):
                if _free(text_spans, m.start(), m.end()) and _free(extra, m.start(), m.end()):
                    extra.append(_Span(m.start(), m.end(), known[m.group()], 0.5))
            out.append(sorted(text_spans + extra))
        return out

    @staticmethod
    def _placeholders(texts: list[str], spans: list[list[_Span]]) -> dict[str, str]:
        """original value -> placeholder, numbered per entity in order of first appearance.

        Numbers already present literally in the input are skipped, so `restore` can never turn
        a placeholder-looking string the customer wrote into someone's data.
        """
        counters: Counter[str] = Counter()
        placeholders: dict[str, str] = {}
        for text, text_spans in zip(texts, spans):
            for s in text_spans:
                value = text[s.start : s.end]
                if value in placeholders:
                    continue
                while True:
                    counters[s.entity] += 1
                    candidate = f"<{s.entity}_{counters[s.entity]}>"
                    if not any(candidate in t for t in texts):
                        break
                placeholders[value] = candidate
        return placeholders

    def _anonymize(self, text: str, spans: list[_Span], placeholders: dict[str, str]) -> str:
        if not spans:
            return text
        operators = {
            entity: OperatorConfig("custom", {"lambda": lambda value: placeholders[value]})
            for entity in {s.entity for s in spans}
        }
        result = self._anonymizer.anonymize(
            text=text,
            analyzer_results=[AnonymizerResult(s.entity, s.start, s.end, s.score) for s in spans],
            operators=operators,
            conflict_resolution=ConflictResolutionStrategy.REMOVE_INTERSECTIONS,
            merge_entities_with_spaces=False,
        )
        if len(result.items) != len(spans):
            raise RuntimeError("anonymizer dropped a span")
        return result.text


def _entity_of(placeholder: str) -> str:
    m = PLACEHOLDER.fullmatch(placeholder)
    return m.group(1) if m else "UNKNOWN"
