"""Routing: which engine answers a ticket (rule table + backup), the result cache, the local
re-review, the hosted fallback and the human review queue. See `pipeline.py` for the flow."""

from server.cache import ServiceCache, engine_namespace
from server.results import OTHER_REASONS, ROUTES
from server.routing.answer import Answer
from server.routing.cost import EngineMeter
from server.routing.job import Job, RouteLedger
from server.routing.labels import label_fields_of, null_output
from server.routing.language import detect_language
from server.routing.pipeline import Router
from server.routing.rules import (
    DEFAULT_PROFILE,
    Choice,
    ProfileRules,
    answered_by_label,
    rule_matches,
)

__all__ = [
    "DEFAULT_PROFILE",
    "OTHER_REASONS",
    "ROUTES",
    "Answer",
    "Choice",
    "EngineMeter",
    "Job",
    "ProfileRules",
    "RouteLedger",
    "Router",
    "ServiceCache",
    "answered_by_label",
    "detect_language",
    "engine_namespace",
    "label_fields_of",
    "null_output",
    "rule_matches",
]
