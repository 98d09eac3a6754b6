"""The cache entry's JSON is what Redis already holds (and other replicas read): its keys must not change."""

from __future__ import annotations

import pytest

from server.cache import CachedAnswer
from server.engines.base import ModelInfo

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
