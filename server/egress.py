"""What leaves the premises: every request body sent to a hosted API, byte for byte, and its audit event.

The hosted providers' HTTP clients carry `on_request` as an httpx event hook, which runs in the task that
sends the request; `capture()` starts a list in the current task's context that the hook appends to. The
hosted routing stage starts one per ticket (each ticket's hosted call runs in a task of its own), so the
list on a ticket's job holds exactly what was sent about that ticket: retries and redirects included,
failed calls included (their bytes left too). The service then audits each body as `hosted_call` with
the ticket id: the body itself, sealed at rest (`audit.hosted_payload: full`), or only its sha256
(`hash`), with the placeholders it carries counted by entity type either way.

Light on purpose (no SDK import): the service and the routing job import it."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from server.auth.principal import Principal
from server.store import audit
from server.store.models import ApiKey

if TYPE_CHECKING:
    import httpx

__all__ = ["HostedCall", "SentRequest", "capture", "on_request", "placeholder_counts", "record_hosted_calls"]

log = logging.getLogger(__name__)

# The redactor's placeholders ("<" + Presidio entity + "_" + n + ">", server.privacy.redact): counted in
# what was sent, they are the redactions the provider saw, read off the audited bytes themselves.
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)_(\d+)>")


@dataclass(frozen=True)
class SentRequest:
    url: str
    body: bytes


_SENT: ContextVar[list[SentRequest] | None] = ContextVar("triage_hosted_sent", default=None)


def capture() -> list[SentRequest]:
    """Record, from now on in the current task, every request body a hosted provider sends; the returned
    list fills as they go out."""
    sent: list[SentRequest] = []
    _SENT.set(sent)
    return sent


async def on_request(request: httpx.Request) -> None:
    """The httpx request hook: runs after the request is built, before its bytes are written."""
    sent = _SENT.get()
    if sent is not None:
        sent.append(SentRequest(str(request.url.copy_with(query=None)), await request.aread()))


def placeholder_counts(body: str) -> dict[str, int]:
    """Entity type -> placeholders in the text (each occurrence; a JSON body escapes none of <, >, _)."""
    return dict(Counter(m.group(1) for m in PLACEHOLDER.finditer(body)))


@dataclass(frozen=True)
class HostedCall:
    """One ticket's hosted traffic, as the service hands it over after routing."""

    ticket_id: str
    request_id: str
    key_id: int | None
    sent: Sequence[SentRequest]


def _actor(session: Session, key_id: int | None, names: dict[int, str]) -> str:
    if key_id is None:
        return "anonymous"
    if key_id not in names:
        key = session.get(ApiKey, key_id)
        names[key_id] = key.name if key is not None else f"key:{key_id}"
    return names[key_id]


def record_hosted_calls(sessions: sessionmaker[Session], calls: Sequence[HostedCall], *, keep_payload: bool) -> int:
    """Append one `hosted_call` event per request sent; how many. Never raises: the bytes have left whatever
    happens here, so a failure is logged loudly rather than turned into a failed classification."""
    events = [(call, sent) for call in calls for sent in call.sent]
    if not events:
        return 0
    try:
        with sessions() as session:
            names: dict[int, str] = {}
            for call, sent in events:
                principal = Principal(_actor(session, call.key_id, names), "classify", key_id=call.key_id)
                # JSON bodies are UTF-8 (RFC 8259); a stray byte is kept visible rather than dropped.
                payload = sent.body.decode("utf-8", errors="backslashreplace")
                audit.record(
                    session,
                    principal,
                    "hosted_call",
                    ticket_id=call.ticket_id,
                    target=sent.url,
                    detail={
                        "request_id": call.request_id,
                        "bytes": len(sent.body),
                        "redactions": placeholder_counts(payload),
                    },
                    payload=payload,
                    keep_payload=keep_payload,
                    commit=False,
                )
            session.commit()
    except SQLAlchemyError:
        log.exception(
            "AUDIT: could not record %d hosted-API calls of tickets %s", len(events), [c.ticket_id for c in calls]
        )
        return 0
    return len(events)
