"""Bag-of-n-grams text features: word 1-2-grams and character 2-5-grams, TF-IDF weighted.

The classical baseline (server.evaluation.classical) and the text part of a label head use the same
features. A fitted vectoriser is stored as data (vocabulary + idf), never as a pickle: loading an
adapter folder must not be able to run code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from server.prompts import TicketInput

PARTS: dict[str, dict[str, Any]] = {
    "word": {"analyzer": "word", "ngram_range": (1, 2)},
    "char": {"analyzer": "char_wb", "ngram_range": (2, 5)},
}


def ticket_text(ticket: TicketInput) -> str:
    """Everything the customer and the agents wrote, in reading order."""
    return "\n".join([ticket.subject, ticket.body, *ticket.previous_interactions])


def make_vectorizer(min_df: int = 2, max_features: int | None = None) -> FeatureUnion:
    return FeatureUnion(
        [
            (name, TfidfVectorizer(sublinear_tf=True, min_df=min_df, max_features=max_features, **kw))
            for name, kw in PARTS.items()
        ]
    )


def vectorizer_state(union: FeatureUnion) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(JSON-able vocabularies, arrays) of a fitted vectoriser."""
    meta: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, vec in union.transformer_list:
        meta[name] = {term: int(i) for term, i in vec.vocabulary_.items()}
        arrays[f"text.{name}.idf"] = vec.idf_.astype(np.float32)
    return meta, arrays


def vectorizer_from_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> FeatureUnion:
    parts = []
    for name, kw in PARTS.items():
        vec = TfidfVectorizer(sublinear_tf=True, vocabulary=meta[name], **kw)
        vec.idf_ = arrays[f"text.{name}.idf"].astype(np.float64)
        parts.append((name, vec))
    return FeatureUnion(parts)
