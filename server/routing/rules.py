"""Which local engine answers a ticket: the rule table of `routing.rules`, and the backup.

The default configuration has one catch-all rule to the `default` engine, i.e. one engine for all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from server.config import RouteRule, RoutingSettings
from server.engines.base import Engine, ModelInfo
from server.prompts import TicketInput
from server.routing.language import detect_language

DEFAULT_ENGINE = "default"


def ticket_chars(ticket: TicketInput) -> int:
    return len(ticket.subject) + len(ticket.body) + sum(len(m) for m in ticket.previous_interactions)


def engine_label(info: ModelInfo) -> str:
    """What a result's `engine` field says: the engine kind and the adapter (or the base model's name)."""
    model = info.adapter or Path(str(info.base).rstrip("/")).name or str(info.base)
    return f"{info.engine}:{model}"


@dataclass(frozen=True)
class Choice:
    engine: str  # the name in the rule table ('default' or a key of routing.engines)
    rule: int | None  # index of the matching rule; None = nothing matched (default engine)
    language: str
    chars: int


def rule_matches(rule: RouteRule, language: str, chars: int) -> bool:
    if rule.max_chars is not None and chars > rule.max_chars:
        return False
    if rule.min_chars is not None and chars < rule.min_chars:
        return False
    if rule.languages is not None and language not in rule.languages:
        return False
    return True


class EngineRules:
    """Picks an engine per ticket and says which engines to try, in order."""

    def __init__(self, settings: RoutingSettings, engines: Mapping[str, Engine]):
        missing = ({r.engine for r in settings.rules} | ({settings.backup} if settings.backup else set())) - set(
            engines
        )
        if missing:
            raise ValueError(f"routing refers to engines that were not built: {', '.join(sorted(missing))}")
        self.rules = list(settings.rules)
        self.backup = settings.backup
        self.engines = engines
        # Language detection is only paid for when a rule asks about it.
        self._needs_language = any(r.languages is not None for r in self.rules)

    def choose(self, ticket: TicketInput) -> Choice:
        chars = ticket_chars(ticket)
        language = detect_language(f"{ticket.subject}\n{ticket.body}") if self._needs_language else "unknown"
        for i, rule in enumerate(self.rules):
            if rule_matches(rule, language, chars):
                return Choice(rule.engine, i, language, chars)
        return Choice(DEFAULT_ENGINE, None, language, chars)

    def candidates(self, name: str) -> list[str]:
        """The chosen engine, then the backup (when there is one and it is another engine)."""
        order = [name]
        if self.backup is not None and self.backup != name:
            order.append(self.backup)
        return order
