"""Label confidences from vLLM's logprobs, equal to the embedded decoder's.

The embedded decoder (server.engines.decoding) scores a label by walking the labels' token trie: at
each node it renormalises the raw logits of the allowed options (the children, plus the token that
ends the label when a label ends at that node) with the field's calibration temperature, and
multiplies the chosen option's probability along the path. Here the same walk runs over the tokens
vLLM generated, with the option scores taken from the top logprobs vLLM returned at each position.

vLLM 0.32 applies the structured-output bitmask to the logits before its sampler computes the
`raw_logprobs` (the default `--logprobs-mode`): a returned logprob is the raw logit minus one
log-normaliser over the grammar-allowed tokens, and disallowed tokens come back as -9999. A softmax
over a subset is invariant to a shift shared by the subset, so softmax(logprob / T) over the options
equals softmax(logit / T): the embedded engine's number, exactly, whenever every option is in the
top-k. An option outside the top-k scored at most the k-th logprob; it is given that bound (so the
confidence reported is a lower bound; the field is listed in `bounded`). When fewer than k tokens
were allowed (the top-k list ends in -9999 entries), a missing option was masked and the result is
exact again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from server.engines.decoding import Choice, DecodingPlan, TrieNode

# vLLM writes a masked token's logprob as -9999.0 (not -inf, which JSON cannot carry).
MASKED = -9000.0


@dataclass(frozen=True)
class Position:
    """One generated token: its id, its own logprob and the top logprobs at its position (id -> logprob)."""

    token: int
    logprob: float
    top: Mapping[int, float]


@dataclass
class LabelScores:
    confidence: dict[str, float] = field(default_factory=dict)
    # Fields scored with an option outside the top-k: the confidence is a lower bound.
    bounded: list[str] = field(default_factory=list)
    # Fields whose generated tokens are not the label's canonical tokenisation (no trie walk possible):
    # the confidence is the product of the label tokens' own probabilities (uncalibrated), flagged.
    fallback: list[str] = field(default_factory=list)
    # Per walked field, each decision's option scores (logprobs, -inf where masked) and the chosen index:
    # the embedded decoder's calibration trace up to a shift per decision, which a softmax ignores.
    trace: dict[str, list[tuple[list[float], int]]] = field(default_factory=dict)


def token_offsets(tokenizer: Any, ids: Sequence[int]) -> list[int]:
    """Character offset of each token in the decoded completion (prefix decodes: exact for byte-level BPE
    where a character spans tokens, since a prefix ending mid-character decodes shorter)."""
    decode = tokenizer.decode
    return [len(decode(list(ids[:i]))) for i in range(len(ids))]


def value_start(text: str, key: str, after: int) -> int | None:
    """Character offset where the string value of `"key": "..."` begins, searching from `after`. In valid
    JSON an unescaped quote followed by `key":` can only open that key (a closing quote is followed by
    `,`, `}` or `:`), and the schema's keys are unique, so the first match is the field."""
    m = re.compile(r'(?<!\\)"' + re.escape(key) + r'"\s*:\s*"').search(text, after)
    return m.end() if m else None


def _walk(
    choice: Choice,
    positions: Sequence[Position],
    i: int,
    label: str,
    temperature: float,
    steps: list[tuple[list[float], int]],
) -> tuple[float, bool] | None:
    """The trie walk from token `i`; (confidence, bounded) or None when the path leaves the trie. Each
    scored decision is appended to `steps` (raw scores, chosen index)."""
    node: TrieNode = choice.root
    prob, bounded = 1.0, False
    while True:
        options = list(node.children)
        if node.label is not None:
            options.append(choice.end_token)
        if i >= len(positions):
            return None
        pos = positions[i]
        if pos.token in node.children:
            k = options.index(pos.token)
        elif node.label is not None:
            k = len(options) - 1  # the label ends here (whatever token closed the string)
        else:
            return None
        if len(options) > 1:  # a single-child node is forced, as in the embedded decoder
            top = dict(pos.top)
            # Anything outside the returned top-k scored at most its last entry.
            floor = min(top.values()) if top else pos.logprob
            top.setdefault(pos.token, pos.logprob)  # vLLM returns the sampled token's logprob as well
            if k == len(options) - 1 and node.label is not None:
                # The end option: the embedded decoder scores the canonical closing token.
                top.setdefault(choice.end_token, pos.logprob)
            raw = []
            for option in options:
                lp = top.get(option)
                if lp is None:
                    # Below the returned top-k; exact (masked) when the list already holds masked entries.
                    bounded = bounded or floor > MASKED
                    lp = floor
                raw.append(-math.inf if lp <= MASKED else lp)
            steps.append((raw, k))
            scores = [r / temperature for r in raw]
            top_score = max(scores)
            weights = [math.exp(s - top_score) if s > -math.inf else 0.0 for s in scores]
            prob *= weights[k] / sum(weights)
        if k == len(options) - 1 and node.label is not None:
            return (prob, bounded) if node.label == label else None
        node = node.children[pos.token]
        i += 1


def label_confidences(
    plan: DecodingPlan,
    text: str,
    output: Mapping[str, object],
    positions: Sequence[Position],
    offsets: Sequence[int],
    temperatures: Mapping[str, float],
) -> LabelScores:
    """Each label field's confidence as the embedded decoder would compute it (see the module doc)."""
    scores = LabelScores()
    after = 0
    start_of = {off: i for i, off in reversed(list(enumerate(offsets)))}  # first token starting at an offset
    for seg in plan.segments:
        if not isinstance(seg, Choice):
            continue
        name = seg.slot.name
        value: object = output
        for key in seg.slot.path:
            value = value.get(key) if isinstance(value, Mapping) else None
        start = value_start(text, name, after)
        if not isinstance(value, str) or start is None:
            continue
        after = start
        i = start_of.get(start)
        steps: list[tuple[list[float], int]] = []
        walked = _walk(seg, positions, i, value, temperatures.get(name, 1.0), steps) if i is not None else None
        if walked is not None:
            scores.trace[name] = steps
            scores.confidence[name], bounded = walked
            if bounded:
                scores.bounded.append(name)
            continue
        # Not the canonical tokenisation (e.g. the opening quote merged into the label's first token):
        # the tokens that overlap the value, closing quote included.
        end = start + len(value) + 1
        overlapping = [
            p.logprob
            for j, p in enumerate(positions)
            if offsets[j] < end and (offsets[j + 1] if j + 1 < len(offsets) else len(text)) > start
        ]
        scores.confidence[name] = math.exp(sum(overlapping))
        scores.fallback.append(name)
    return scores
