"""The copy scorer (server.heads.copy) of a taxonomy's copy-only field, fitted on the training rows.

A copy-only field (e.g. an error code) must be one of the ticket's own spans; the scorer ranks the
candidate spans so the decoder copies the right one (or none).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from finetune.data import Example
from server.heads.copy import CopyScorer
from server.results import label_of
from server.taxonomy import Taxonomy

log = logging.getLogger(__name__)


def fit_copy_scorer(
    taxonomy: Taxonomy, train: Sequence[Example], held: Sequence[Example], c: float = 1.0
) -> tuple[CopyScorer, dict[str, Any]] | None:
    """The copy scorer (server.heads.copy) of the taxonomy's copy-only field, from the training rows'
    candidates: the labelled span is the positive, the ticket's other candidates the negatives. None when
    the taxonomy has no copy-only field or the rows hold too few labelled spans to learn from."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    from server.extraction import candidate_features, candidates, ticket_texts

    spec = next((f for f in taxonomy.extracted_info if f.copy_only), None)
    if spec is None:
        return None

    def rows(examples: Sequence[Example]) -> tuple[list[dict[str, int]], list[int]]:
        X, y = [], []
        for ex in examples:
            gold = label_of(ex.answer, spec.name)
            found = candidates(ticket_texts(ex.ticket.subject, ex.ticket.body, ex.ticket.previous_interactions))
            for rank, cand in enumerate(found):
                X.append({f: 1 for f in candidate_features(cand, len(found), rank)})
                y.append(int(cand.span == gold))
        return X, y

    X, y = rows(train)
    if sum(y) < 20 or sum(y) == len(y):
        log.warning(
            "copy scorer for %s: %d labelled spans among %d candidates, too few to fit", spec.name, sum(y), len(y)
        )
        return None
    vec = DictVectorizer()
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(vec.fit_transform(X), y)
    scorer = CopyScorer(
        spec.name,
        {f: float(w) for f, w in zip(vec.get_feature_names_out(), model.coef_[0]) if abs(w) > 1e-6},
        float(model.intercept_[0]),
    )

    def exact(examples: Sequence[Example]) -> dict[str, Any]:
        with_code: list[bool] = []
        without: list[bool] = []
        for ex in examples:
            gold = label_of(ex.answer, spec.name)
            got = scorer.choose(ticket_texts(ex.ticket.subject, ex.ticket.body, ex.ticket.previous_interactions))
            (with_code if gold else without).append(got == gold)
        return {
            "exact_with_code": round(sum(with_code) / len(with_code), 4) if with_code else None,
            "n_with_code": len(with_code),
            "null_kept": round(sum(without) / len(without), 4) if without else None,
        }

    report = {
        "field": spec.name,
        "c": c,
        "candidates": len(y),
        "positives": int(sum(y)),
        "features": len(scorer.weights),
        "train": exact(train),
        "heldout": exact(held),
    }
    log.info("copy scorer %s: %s", spec.name, report)
    return scorer, report
