"""Routing: which engine answers a ticket (rule table + backup), the result cache, the local
re-review, the hosted fallback and the human review queue. See `pipeline.py` for the flow."""

from server.results import OTHER_REASONS, ROUTES
from server.routing.cache import ServiceCache, engine_namespace
from server.routing.cost import EngineMeter
from server.routing.language import detect_language
from server.routing.pipeline import Answer, Job, Router, label_fields_of, null_output
from server.routing.rules import DEFAULT_ENGINE, Choice, EngineRules, engine_label, rule_matches

__all__ = [
    "DEFAULT_ENGINE",
    "OTHER_REASONS",
    "ROUTES",
    "Answer",
    "Choice",
    "EngineMeter",
    "EngineRules",
    "Job",
    "Router",
    "ServiceCache",
    "detect_language",
    "engine_label",
    "engine_namespace",
    "label_fields_of",
    "null_output",
    "rule_matches",
]
