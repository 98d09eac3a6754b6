"""Normalisation, namespace hashing and LSH parameters: pure functions, no backend. The namespace a\nserving configuration caches under is tested in test_namespace.py."""

from __future__ import annotations

import numpy as np
from datasketch import MinHashLSH

from server.cache import cache_namespace, lsh_params, normalise_text
from server.cache.lsh import Signature, Signer
from server.prompts import TicketInput


def test_normalise_folds_case_width_and_whitespace() -> None:
    a = TicketInput("  Login  FAILS ", "Straße\tﬁle\n\n ＡＢＣ  error ", ("First   reply",))
    b = TicketInput("login fails", "STRASSE file abc error", ("first reply",))
    assert normalise_text(a) == normalise_text(b)
    assert normalise_text(b) == "login fails\nstrasse file abc error\nfirst reply"


def test_normalise_keeps_parts_apart() -> None:
    # Moving words between subject and body, or into the history, is a different prompt.
    assert normalise_text(TicketInput("a b", "c")) != normalise_text(TicketInput("a", "b c"))
    assert normalise_text(TicketInput("a", "b")) != normalise_text(TicketInput("a", "b", ("",)))
    assert normalise_text(TicketInput("a", "b", ("c",))) != normalise_text(TicketInput("a", "b c"))


def test_namespace_hash_ignores_argument_order() -> None:
    parts = dict(base="smollm2", adapter="a1", decoding={"temp": 0, "max": 16})
    ns = cache_namespace(**parts)
    assert ns == cache_namespace(**dict(reversed(list(parts.items()))))
    assert ns == cache_namespace(**{**parts, "decoding": {"max": 16, "temp": 0}})
    assert len(ns) == 16 and int(ns, 16) >= 0


def test_lsh_params_match_datasketch() -> None:
    for threshold, num_perm in ((0.9, 128), (0.8, 64), (0.5, 32)):
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        assert lsh_params(threshold, num_perm) == (lsh.b, lsh.r)


def test_signature_round_trip_and_short_text() -> None:
    signer = Signer(0.9, 128, 3)
    assert signer.signature("too short") is None
    sig = signer.signature(" ".join(f"w{i}" for i in range(50)))
    assert sig is not None and sig.values.shape == (128,)
    back = Signature.decode(sig.encode())
    assert np.array_equal(back.values, sig.values) and back.similarity(sig) == 1.0
    assert len(signer.band_keys(sig)) == signer.bands == 5
