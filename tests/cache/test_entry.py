"""The cache entry's JSON is what Redis already holds (and other replicas read): its keys must not change."""

from __future__ import annotations

from typing import Any

import pytest

from server.cache import CachedAnswer
from server.cache.entry import free_text_fields, without_free_text
from server.engines.base import ModelInfo
from server.taxonomy import Taxonomy

STORED = {
    "output": {"category": "Billing", "extracted_info": {"sentiment": "negative"}},
    "confidence": {"category": 0.97, "sentiment": None},
    "engine": "transformers:tickets-smollm2-v1",
    "model": {"base": "/m/base", "adapter": "tickets-smollm2-v1", "dtype": "float32", "engine": "transformers"},
    "prompt_version": "classify/v2",
    "input_truncated": True,
    "route": "hosted",
}


def test_entry_reads_and_writes_the_stored_shape() -> None:
    entry = CachedAnswer.from_json(STORED)
    assert entry.answered_by == "transformers:tickets-smollm2-v1" and entry.route == "hosted"
    assert entry.model == ModelInfo("/m/base", "tickets-smollm2-v1", "float32", "transformers")
    assert entry.to_json() == STORED


def test_entry_of_another_shape_is_refused() -> None:
    with pytest.raises(KeyError):
        CachedAnswer.from_json({k: v for k, v in STORED.items() if k != "engine"})


def test_labels_only_form_nulls_every_free_text_field(taxonomy: Taxonomy) -> None:
    full: dict[str, Any] = {
        "category": "Billing",
        "priority": "High",
        "extracted_info": {"product": "Pro plan", "error_code": "E-1", "sentiment": "negative"},
        "reasoning": "jane@example.com was charged twice",
    }
    assert free_text_fields(taxonomy) == ("product", "error_code", "reasoning")
    stripped = without_free_text(full, taxonomy)
    assert stripped == {
        "category": "Billing",
        "priority": "High",
        "extracted_info": {"product": None, "error_code": None, "sentiment": "negative"},
        "reasoning": None,
    }
    assert full["reasoning"] and full["extracted_info"]["product"] == "Pro plan"  # the original is untouched
    # A trimmed answer keeps its shape: absent fields are not added.
    assert without_free_text({"category": "Billing"}, taxonomy) == {"category": "Billing"}
    entry = CachedAnswer.from_json({**STORED, "output": full}).labels_only(taxonomy)
    assert entry.output == stripped and entry.route == "hosted"
