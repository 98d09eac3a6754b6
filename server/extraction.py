"""Candidate spans for copy-only extraction fields (error codes).

An error code in an answer must be text of the ticket, never something the model made up. The
engine constrains such a field to `null` or one of the spans found here (the grammar is built per
ticket), the fine-tuning job trains on the same spans, and a hosted answer is checked against them.

The patterns cover code-like tokens as they appear in support tickets: vendor codes with a prefix and
digits (`ORA-00942`, `E-1234`, `AADSTS50126`), Windows hex codes (`0x80070005`), Chromium/network
constants (`ERR_CONNECTION_REFUSED`, `NET::ERR_CERT_DATE_INVALID`), upper-snake stop codes, POSIX
errno names (`ECONNREFUSED`), HTTP statuses with their keyword (`HTTP 503`, `Error 502`), SQLSTATEs,
spreadsheet errors (`#VALUE!`) and exception class names (`NullPointerException`). Code-like tokens
that are not errors (order numbers, model numbers) are candidates too: choosing `null` for them is
the model's job, which it is trained on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_CANDIDATES = 8  # a ticket pasting a whole log keeps its first distinct codes
MAX_SPAN_CHARS = 48

_PATTERNS = [
    r"\bNET::ERR_[A-Z0-9_]+\b",
    r"\b0x[0-9A-Fa-f]{4,16}\b",
    # An HTTP status or a bare number is a code only with its keyword: "HTTP 503", "Error 502", "Fehler 500".
    r"\b(?:[Hh][Tt][Tt][Pp](?:/[12](?:\.[01])?)?|[Ee]rror[ -]?[Cc]ode|[Ee]rror|ERROR|[Ss]tatus|[Ff]ehler|[Ee]rreur|[Ee]rro|[Cc]ode|[Cc][oó]digo)[ :]{0,2}\d{2,5}\b",
    r"\bSQLSTATE[ :\[]{0,2}[0-9A-Z]{5}\]?",
    r"#(?:VALUE!|REF!|NAME\?|DIV/0!|N/A|NUM!|NULL!|SPILL!|CALC!)",
    r"\b(?:[a-z][a-z0-9_]*\.)*[A-Z][A-Za-z0-9]*(?:Exception|Error)\b",
    r"\bE(?:CONNREFUSED|CONNRESET|CONNABORTED|TIMEDOUT|NOENT|ACCES|PERM|ADDRINUSE|HOSTUNREACH|NETUNREACH|PIPE|NOTFOUND|AI_AGAIN)\b",
    # Upper snake case with at least one underscore: ERR_NAME_NOT_RESOLVED, CRITICAL_PROCESS_DIED.
    r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b",
    # A letter prefix and digits, optionally dashed: ORA-12541, E-104, E05, AADSTS50126, KB5034441, ERR-4021.
    r"\b[A-Z][A-Za-z]{0,7}-?\d{2,8}(?:-\d{1,6})?\b",
]
# One capturing group per pattern (the patterns themselves only use non-capturing groups), so a
# match's `lastindex` says which shape it has.
_CANDIDATE = re.compile("|".join(f"({p})" for p in _PATTERNS))
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass(frozen=True)
class Candidate:
    span: str
    pattern: int  # which of _PATTERNS matched (1-based)
    text_index: int  # 0 subject, 1 body, 2.. history messages
    left: str  # up to 60 characters before the first occurrence
    right: str  # up to 40 characters after it


def candidates(texts: Iterable[str]) -> list[Candidate]:
    """Distinct code-like spans of the texts (subject, body, history) with where they first appear."""
    found: dict[str, Candidate] = {}
    for k, text in enumerate(texts):
        text = text or ""
        for m in _CANDIDATE.finditer(text):
            span = m.group(0).strip()
            if len(span) > MAX_SPAN_CHARS or span in found:
                continue
            found[span] = Candidate(
                span, m.lastindex or 0, k, text[max(0, m.start() - 60) : m.start()], text[m.end() : m.end() + 40]
            )
            if len(found) >= MAX_CANDIDATES:
                return list(found.values())
    return list(found.values())


def candidate_spans(texts: Iterable[str]) -> list[str]:
    """Distinct code-like spans of the texts (subject, body, history), in order of first appearance."""
    return [c.span for c in candidates(texts)]


def _shape(span: str) -> str:
    """ORA-00942 -> A-9, 0x80070005 -> 9a9, ERR_CONNECTION_REFUSED -> A_A_A."""
    out: list[str] = []
    for ch in span:
        c = "A" if ch.isupper() else "a" if ch.islower() else "9" if ch.isdigit() else ch
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


def candidate_features(c: Candidate, n_candidates: int, rank: int) -> list[str]:
    """Sparse features of one candidate for the copy scorer (server.heads.copy): its shape and the words
    around it, which tell an error ("fails with", "Fehlermeldung:") from an order or model number."""
    left = [w.lower() for w in _WORD.findall(c.left)][-4:]
    right = [w.lower() for w in _WORD.findall(c.right)][:3]
    feats = [
        f"pat={c.pattern}",
        f"shape={_shape(c.span)}",
        f"where={min(c.text_index, 2)}",
        f"len={min(len(c.span) // 4, 6)}",
        f"rank={min(rank, 3)}",
        f"n={min(n_candidates, 4)}",
    ]
    feats += [f"l={w}" for w in left] + [f"r={w}" for w in right]
    if left:
        feats.append(f"l1={left[-1]}")
    if right:
        feats.append(f"r1={right[0]}")
    stripped = c.left.rstrip()
    if stripped:
        feats.append(f"lc={stripped[-1]}")
    return feats


def ticket_texts(subject: str, body: str, history: Iterable[str] = ()) -> list[str]:
    return [subject, body, *history]


def is_copied(value: str | None, texts: Iterable[str]) -> bool:
    """An extracted value is acceptable only as null or as one of the ticket's candidate spans."""
    return value is None or value in candidate_spans(texts)
