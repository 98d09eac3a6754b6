"""Which engine profile answers a ticket: the rule table of `routing.rules`, and the backup.

Words: a *profile* is a name in the rule table (`default` or a key of `routing.engines`; the
settings key stays `engine:`), the model engine built for it answers. The default configuration
has one catch-all rule to the `default` profile, i.e. one engine for all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from server.config import RouteRule, RoutingSettings
from server.engines.base import Engine, ModelInfo
from server.prompts import TicketInput
from server.results import DetectedLanguage
from server.routing.language import UNKNOWN, detect_language

DEFAULT_PROFILE = "default"


def ticket_chars(ticket: TicketInput) -> int:
    return len(ticket.subject) + len(ticket.body) + sum(len(m) for m in ticket.previous_interactions)


def answered_by_label(info: ModelInfo) -> str:
    """What a result says answered it (the API's and the table's `engine` field): the engine kind and
    the adapter (or the base model's name), e.g. transformers:tickets-smollm2-v1."""
    model = info.adapter or Path(str(info.base).rstrip("/")).name or str(info.base)
    return f"{info.engine}:{model}"


@dataclass(frozen=True)
class Choice:
    profile: str  # the rule table's name ('default' or a key of routing.engines)
    rule: int | None  # index of the matching rule; None = nothing matched (default profile)
    language: DetectedLanguage
    chars: int


def rule_matches(rule: RouteRule, language: str, chars: int) -> bool:
    if rule.max_chars is not None and chars > rule.max_chars:
        return False
    if rule.min_chars is not None and chars < rule.min_chars:
        return False
    if rule.languages is not None and language not in rule.languages:
        return False
    return True


class ProfileRules:
    """Picks a profile per ticket and says which profiles to try, in order."""

    def __init__(self, settings: RoutingSettings, engines: Mapping[str, Engine]) -> None:
        named = {r.engine for r in settings.rules} | ({settings.backup} if settings.backup else set())
        missing = named - set(engines)
        if missing:
            raise ValueError(f"routing refers to engines that were not built: {', '.join(sorted(missing))}")
        self.rules = list(settings.rules)
        self.backup = settings.backup
        # Language detection is only paid for when a rule asks about it.
        self._needs_language = any(r.languages is not None for r in self.rules)

    def choose(self, ticket: TicketInput) -> Choice:
        chars = ticket_chars(ticket)
        language: DetectedLanguage = (
            detect_language(f"{ticket.subject}\n{ticket.body}") if self._needs_language else UNKNOWN
        )
        for i, rule in enumerate(self.rules):
            if rule_matches(rule, language, chars):
                return Choice(rule.engine, i, language, chars)
        return Choice(DEFAULT_PROFILE, None, language, chars)

    def candidates(self, profile: str) -> list[str]:
        """The chosen profile, then the backup (when there is one and it is another profile)."""
        order = [profile]
        if self.backup is not None and self.backup != profile:
            order.append(self.backup)
        return order
