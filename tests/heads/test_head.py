"""Label heads without a language model: synthetic hidden features + real TF-IDF text, fitted by the
fine-tuning job's code, saved, loaded, and used exactly as the engine uses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetune.config import HeadArgs
from finetune.data import Example
from finetune.heads import fit_head
from server.heads.head import LabelHead, Pool, pool_features
from server.prompts import TicketInput
from server.registry import HEAD_FILES
from server.taxonomy import parse_taxonomy

TAXONOMY = parse_taxonomy(
    {
        "name": "t",
        "labels": {"category": {"values": ["Billing", "Technical", "Sales"]}, "urgent": {"values": ["yes", "no"]}},
        "reasoning": False,
    }
)
WORDS = {"Billing": "invoice refund charge", "Technical": "error crash login", "Sales": "quote demo pricing"}


def make(n: int, seed: int, informative_hidden: bool) -> tuple[list[Example], np.ndarray]:
    rng = np.random.default_rng(seed)
    examples, feats = [], []
    cats = list(WORDS)
    for i in range(n):
        cat = cats[i % 3]
        urgent = "yes" if i % 4 == 0 else "no"
        text = f"{WORDS[cat]} {'now asap' if urgent == 'yes' else 'whenever'} {rng.integers(1000)}"
        examples.append(Example(str(i), TicketInput("", text), {"category": cat, "urgent": urgent}, "synthetic"))
        f = rng.normal(size=8)
        if informative_hidden:
            f[cats.index(cat)] += 3.0
            f[3] += 3.0 if urgent == "yes" else -3.0
        feats.append(f)
    return examples, np.array(feats, dtype=np.float32)


def test_fit_save_load_predict_roundtrip(tmp_path):
    train, ftrain = make(120, 0, informative_hidden=True)
    held, fheld = make(60, 1, informative_hidden=True)
    head, report = fit_head("t", TAXONOMY, train, held, ftrain, fheld, HeadArgs(enabled=True, pools=[[3, "mean"]]))
    assert report["fields"]["category"]["heldout_accuracy"] == 1.0
    assert report["fields"]["urgent"]["labels"] == ["no", "yes"], "a two-label field keeps one row per label"
    assert head.save(tmp_path) == list(HEAD_FILES)
    loaded = LabelHead.load(tmp_path)
    tickets = [ex.ticket for ex in held]
    a, b = head.predict(fheld, tickets), loaded.predict(fheld, tickets)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for name in x:
            assert x[name][0] == y[name][0] and x[name][1] == pytest.approx(
                y[name][1], abs=2e-3
            )  # text weights stored as fp16
    assert all(pred["category"][0] == ex.answer["category"] for pred, ex in zip(b, held))
    assert all(0.0 < p[1] <= 1.0 for pred in b for p in pred.values())


def test_weight_follows_the_informative_part():
    """Noise in the hidden states: the held-out fit moves the weight to the text model, and back."""
    train, ftrain = make(120, 0, informative_hidden=False)
    held, fheld = make(60, 1, informative_hidden=False)
    _, report = fit_head("t", TAXONOMY, train, held, ftrain, fheld, HeadArgs(enabled=True))
    assert report["fields"]["category"]["text_weight"] >= 0.75
    no_text = HeadArgs(enabled=True, text=False)
    train2, ftrain2 = make(120, 0, informative_hidden=True)
    held2, fheld2 = make(60, 1, informative_hidden=True)
    head, report = fit_head("t", TAXONOMY, train2, held2, ftrain2, fheld2, no_text)
    assert report["fields"]["category"]["text_weight"] == 0.0 and head.vectorizer is None


def test_pool_features_reads_the_requested_layers():
    hs = [torch.arange(12, dtype=torch.float32).reshape(1, 3, 4) * (k + 1) for k in range(3)]
    f = pool_features(hs, [Pool(0, "mean"), Pool(2, "last")])
    assert f.shape == (8,)
    assert np.allclose(f[:4], [4, 5, 6, 7]) and np.allclose(f[4:], np.array([8, 9, 10, 11]) * 3)
