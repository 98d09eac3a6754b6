"""What identifies a cached answer: the normalised ticket text, inside a namespace of everything
else that changes the answer (model, adapter, prompt, taxonomy, decoding)."""

from __future__ import annotations

import hashlib
import json
import unicodedata

from server.prompts import TicketInput

# Normalisation turns every whitespace run into one space, so a newline can never occur inside a
# part: joining the parts with newlines is therefore unambiguous (no two tickets share a text).
PART_SEPARATOR = "\n"
NAMESPACE_HASH_CHARS = 16  # 64 bits: collisions between live configurations are not a concern


def _normalise_part(text: str) -> str:
    # NFKC before and after casefold: casefolding can produce sequences that NFKC composes
    # (Unicode's NFKC_Casefold closure), so both sides are needed for case variants to meet.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.split())


def normalise_text(ticket: TicketInput) -> str:
    """The text the caches key on: variants the model would answer identically (case, width,
    ligatures, whitespace) map to one string. History is part of it because the prompt is."""
    parts = [ticket.subject, ticket.body, *ticket.previous_interactions]
    return PART_SEPARATOR.join(_normalise_part(p) for p in parts)


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_namespace(**parts: object) -> str:
    """Short stable hash of everything that can change an answer.

    Callers pass e.g. base=..., adapter=..., adapter_sha256=..., prompt_version=..., taxonomy=...,
    schema_version=..., decoding={...}. Keys are sorted so argument order never matters; values
    that JSON cannot encode (paths) are stringified.
    """
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:NAMESPACE_HASH_CHARS]
