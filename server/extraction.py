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
from typing import Iterable

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
_CANDIDATE = re.compile("|".join(f"(?:{p})" for p in _PATTERNS))


def candidate_spans(texts: Iterable[str]) -> list[str]:
    """Distinct code-like spans of the texts (subject, body, history), in order of first appearance."""
    seen: dict[str, None] = {}
    for text in texts:
        for m in _CANDIDATE.finditer(text or ""):
            span = m.group(0).strip()
            if len(span) > MAX_SPAN_CHARS or span in seen:
                continue
            seen[span] = None
            if len(seen) >= MAX_CANDIDATES:
                return list(seen)
    return list(seen)


def ticket_texts(subject: str, body: str, history: Iterable[str] = ()) -> list[str]:
    return [subject, body, *history]


def is_copied(value: str | None, texts: Iterable[str]) -> bool:
    """An extracted value is acceptable only as null or as one of the ticket's candidate spans."""
    return value is None or value in candidate_spans(texts)
