"""MinHash signatures of word shingles and LSH band keys, independent of where buckets live.

datasketch computes the signatures; the banding is done here (not with `MinHashLSH`) so that the
same bucket keys work on the in-process store and on Redis, with our own key names and TTLs.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from datasketch import MinHash

# Private in datasketch (pinned at 2.0.0 in pyproject); using it keeps our band/row split
# identical to what `MinHashLSH(threshold, num_perm)` would choose.
from datasketch.lsh import _optimal_param

_SCHEME = "affine32"
_SEED = 1
_SIGNATURE_DTYPE = np.dtype("<u4")  # fixed byte order: signatures and band keys are shared across hosts
_BAND_HASH_BYTES = 8


@lru_cache(maxsize=16)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising equally weighted false-positive and false-negative probability.

    Memoised because datasketch integrates numerically over every split (about a second at 128
    permutations) and every cache instance with the same settings needs the same answer.
    """
    bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
    return int(bands), int(rows)


@dataclass(frozen=True)
class Signature:
    values: np.ndarray  # uint32, num_perm long

    def encode(self) -> str:
        return base64.b64encode(self.values.astype(_SIGNATURE_DTYPE).tobytes()).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> Signature:
        return cls(np.frombuffer(base64.b64decode(text), dtype=_SIGNATURE_DTYPE))

    def similarity(self, other: Signature) -> float:
        """Estimated Jaccard similarity: the share of permutations whose minima agree."""
        if other.values.shape != self.values.shape:
            return 0.0
        return float(np.count_nonzero(self.values == other.values)) / len(self.values)


class Signer:
    """Turns normalised text into a signature and its band keys; safe to share between threads
    (it only reads the permutation parameters after construction)."""

    def __init__(self, threshold: float, num_perm: int, shingle_size: int) -> None:
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self.bands, self.rows = lsh_params(threshold, num_perm)
        # Drawing permutations is the costly part of a fresh MinHash; draw them once and share.
        self._permutations = MinHash(num_perm=num_perm, seed=_SEED, scheme=_SCHEME).permutations
        # A signature is only comparable with one made the same way: tag entries and buckets with it.
        self.tag = f"p{num_perm}s{shingle_size}b{self.bands}r{self.rows}"

    def signature(self, text: str) -> Signature | None:
        """None when the text is too short to shingle: such tickets are cached exactly only."""
        tokens = text.split()
        k = self.shingle_size
        if len(tokens) < k:
            return None
        shingles = {" ".join(tokens[i : i + k]).encode("utf-8") for i in range(len(tokens) - k + 1)}
        mh = MinHash(num_perm=self.num_perm, seed=_SEED, permutations=self._permutations, scheme=_SCHEME)
        mh.update_batch(list(shingles))
        return Signature(mh.hashvalues.astype(_SIGNATURE_DTYPE))

    def band_keys(self, signature: Signature) -> list[str]:
        """One key per band: "<tag>:<band>:<hash of the band's rows>"."""
        raw = signature.values.astype(_SIGNATURE_DTYPE)
        keys = []
        for band in range(self.bands):
            chunk = raw[band * self.rows : (band + 1) * self.rows].tobytes()
            digest = hashlib.blake2b(chunk, digest_size=_BAND_HASH_BYTES).hexdigest()
            keys.append(f"{self.tag}:{band}:{digest}")
        return keys
