"""Payment-card numbers: the one kind of PII that must never leave, whatever else fails.

The same scanner backs the CREDIT_CARD recogniser and `Redactor.assert_safe`, so the final safety
check can only ever fire on something the recogniser missed because of an overlap bug, never
because the two disagree on what a card number looks like.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

MIN_DIGITS = 13
MAX_DIGITS = 19

# Digit groups joined by spaces or dashes (including the non-breaking and thin spaces that
# copy-pasting from PDFs and banking apps produces). Dots are deliberately not separators: they
# would make dotted version/build numbers (10.0.19045.2965) look like 13-digit candidates.
_SEPARATORS = " \\-\u00a0\u2007\u2009\u202f"  # escaped dash: a literal, not a range
_DIGIT_RUN = re.compile(rf"(?<!\d)\d+(?:[{_SEPARATORS}]{{1,3}}\d+)*(?!\d)")
# Dots do separate card groups when every group has 3-6 digits ("4111.1111.1111.1111",
# "3714.748322.65621"): version numbers always have a shorter part (10.0.19045.2965, 121.0.6167.85).
_DOTTED_RUN = re.compile(r"(?<![\d.])\d{3,6}(?:\.\d{3,6}){2,4}(?!\d|\.\d)")
_GROUP = re.compile(r"\d+")


class CardSpan(NamedTuple):
    start: int
    end: int
    digits: str


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _windows(run: str, offset: int) -> Iterator[CardSpan]:
    """Every group-aligned window of 13-19 digits that passes Luhn.

    Windows start and end on group boundaries only: a card written next to another number
    ("4111 1111 1111 1111 123") is still found, while long plain digit strings (tracking numbers,
    IBAN bodies) are not sliced into arbitrary substrings, each of which would pass Luhn one time
    in ten.
    """
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    for i, (gs, _) in enumerate(groups):
        digits = ""
        for j in range(i, len(groups)):
            digits += run[groups[j][0] : groups[j][1]]
            if len(digits) > MAX_DIGITS:
                break
            if len(digits) >= MIN_DIGITS and luhn_valid(digits):
                yield CardSpan(offset + gs, offset + groups[j][1], digits)


def find_card_numbers(text: str) -> list[CardSpan]:
    """Non-overlapping Luhn-valid 13-19 digit numbers, longest first where candidates overlap."""
    found: list[CardSpan] = []
    runs = sorted([*_DIGIT_RUN.finditer(text), *_DOTTED_RUN.finditer(text)], key=lambda m: m.start())
    for run in runs:
        candidates = sorted(_windows(run.group(), run.start()), key=lambda c: (-(c.end - c.start), c.start))
        taken: list[CardSpan] = []
        for cand in candidates:
            if all(cand.end <= t.start or cand.start >= t.end for t in taken):
                taken.append(cand)
        found.extend(sorted(taken))
    return found
