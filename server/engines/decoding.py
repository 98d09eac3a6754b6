"""Field-by-field constrained decoding of the output JSON.

The output is the JSON of `server.schema.output_model`, written in layout order as:
literal scaffolding (fixed by the schema: appended in one forward pass, "jump-forward"),
label choices (decided over the labels' token trie, which also yields the confidence), and
free-text values (token by token under an Outlines-compiled regex of that field's JSON schema).
Every path through this machine spells a string the schema's Outlines regex accepts.

The fine-tuning job builds its target token ids with `answer_token_ids`, the same tokenisation the
decoder produces, so training and serving never disagree on how an answer is split into tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from outlines_core import Guide, Index, Vocabulary
from outlines_core.json_schema import WHITESPACE, build_regex_from_schema
from outlines_core.kernels.torch import allocate_token_bitmask, fill_next_token_bitmask

from server.schema import Slot


@dataclass
class TrieNode:
    children: dict[int, TrieNode] = field(default_factory=dict)
    label: str | None = None  # set where a label's token sequence ends


@dataclass
class Literal:
    text: str
    ids: list[int]


@dataclass
class Choice:
    slot: Slot
    root: TrieNode
    end_token: int  # first token after the label: stands for "the label ends here" when a label prefixes another


@dataclass
class Text:
    slot: Slot
    index: Index
    max_tokens: int


@dataclass
class SpanChoice:
    """A copy-only text field: `null` or one of the ticket's candidate spans, chosen over a trie built
    per ticket (the spans differ per ticket; the options end with their closing quote, so none is a
    prefix of another)."""

    slot: Slot
    end_token: int


Segment = Literal | Choice | Text | SpanChoice


def text_value_regex(slot: Slot) -> str:
    schema: dict[str, Any] = {"type": "string"}
    if slot.nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    # Leading optional space: keeps `": "value` tokenised the natural way (`":`, ` "`, ...).
    return f"{WHITESPACE}{build_regex_from_schema(json.dumps(schema))}"


def _scaffold(layout: Sequence[Slot]) -> list[str | Slot]:
    """The JSON text around the values, in order: strings are fixed, Slots are decided by the model."""
    parts: list[str | Slot] = ["{"]
    open_nested: str | None = None
    for i, slot in enumerate(layout):
        nested = slot.path[0] if len(slot.path) == 2 else None
        if open_nested and nested != open_nested:
            parts.append("}")
            open_nested = None
        if i:
            parts.append(", ")
        if nested and nested != open_nested:
            parts.append(json.dumps(nested) + ": {")
            open_nested = nested
        # Labels are quoted by the scaffold (the model only picks among them); text values carry their own quotes.
        parts.append(json.dumps(slot.name) + (': "' if slot.spec.is_label else ":"))
        parts.append(slot)
        if slot.spec.is_label:
            parts.append('"')
    if open_nested:
        parts.append("}")
    parts.append("}")
    return parts


class DecodingPlan:
    """Compiled once per (taxonomy, field order, tokenizer): the segments and their token ids."""

    def __init__(
        self,
        layout: Sequence[Slot],
        tokenizer: Any,
        vocabulary: Vocabulary | None,
        *,
        max_string_tokens: int,
        max_reasoning_tokens: int,
    ):
        """`vocabulary=None` builds a plan for target encoding only (fine-tuning): no regex index, cannot decode text."""
        self.layout = list(layout)
        self.tokenizer = tokenizer
        self.eos_token_id = tokenizer.eos_token_id
        merged: list[str | Slot] = []
        for part in _scaffold(layout):
            if isinstance(part, str) and merged and isinstance(merged[-1], str):
                merged[-1] += part
            else:
                merged.append(part)
        self._index_cache: dict[str, Index] = {}
        segments: list[Segment] = []
        for j, part in enumerate(merged):
            if isinstance(part, str):
                segments.append(Literal(part, self.encode(part)))
            elif part.spec.is_label or part.spec.copy_only:
                following = merged[j + 1] if j + 1 < len(merged) else ""
                end_ids = self.encode(following) if isinstance(following, str) and following else [self.eos_token_id]
                if part.spec.copy_only:
                    segments.append(SpanChoice(part, end_ids[0]))
                else:
                    segments.append(Choice(part, self._trie(part.spec.labels), end_ids[0]))
            else:
                budget = max_reasoning_tokens if part.name == "reasoning" else max_string_tokens
                index = self._index(text_value_regex(part), vocabulary) if vocabulary is not None else None
                segments.append(Text(part, index, budget))
        self.segments = segments
        # Past this segment nothing is a label: a labels-only pass stops there.
        self.last_choice = max((i for i, seg in enumerate(segments) if isinstance(seg, Choice)), default=-1)
        self.quote_ids = self.encode('"')
        self.label_ids = {
            seg.slot.name: {label: self.encode(label) for label in seg.slot.spec.labels}
            for seg in segments
            if isinstance(seg, Choice)
        }

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    @property
    def copy_fields(self) -> list[str]:
        return [seg.slot.name for seg in self.segments if isinstance(seg, SpanChoice)]

    def span_option(self, value: str | None) -> str:
        """The text a copy-only value is written as (the same as a free-text value's)."""
        return " null" if value is None else " " + json.dumps(value, ensure_ascii=False)

    def span_trie(self, spans: Sequence[str]) -> TrieNode:
        """Options `null` + each span, as written in the JSON. The node label is the JSON text of the value."""
        root = TrieNode()
        for option in [None, *spans]:
            text = self.span_option(option)
            node = root
            for tok in self.encode(text):
                node = node.children.setdefault(tok, TrieNode())
            node.label = text
        return root

    def _index(self, regex: str, vocabulary: Vocabulary) -> Index:
        if regex not in self._index_cache:
            self._index_cache[regex] = Index(regex, vocabulary)
        return self._index_cache[regex]

    def _trie(self, labels: Sequence[str]) -> TrieNode:
        root = TrieNode()
        for label in labels:
            node = root
            for tok in self.encode(label):
                node = node.children.setdefault(tok, TrieNode())
            if node.label is not None:
                raise ValueError(f"labels {node.label!r} and {label!r} tokenise identically")
            node.label = label
        return root

    def answer_token_ids(self, answer: dict[str, Any], *, labels_only: bool = False) -> list[int]:
        """Token ids of a gold answer exactly as the decoder would write it (for training targets).
        `labels_only` stops after the last label, as a labels-only decoding pass does."""
        ids: list[int] = []
        for i, seg in enumerate(self.segments):
            if labels_only and i > self.last_choice:
                break
            if isinstance(seg, Literal):
                ids += seg.ids
                continue
            value = _get(answer, seg.slot.path)
            if isinstance(seg, SpanChoice):
                ids += self.encode(self.span_option(value or None))
            elif isinstance(seg, Choice):
                if value not in seg.slot.spec.values:
                    raise ValueError(f"{'.'.join(seg.slot.path)}={value!r} is not an allowed label")
                ids += self.encode(value)
            else:
                if value in (None, "") and seg.slot.nullable:
                    ids += self.encode(" null")
                else:
                    ids += self.encode(" " + json.dumps(str(value or ""), ensure_ascii=False))
        return ids


def _get(obj: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None  # type: ignore[assignment]
    return obj


class SequenceDecoder:
    """Decoding state of one ticket. `step(logits)` consumes the logits of the last fed position and
    returns the tokens to feed next (the chosen token plus any forced continuation), or [] when done."""

    def __init__(
        self,
        plan: DecodingPlan,
        temperatures: dict[str, float] | None = None,
        *,
        labels_only: bool = False,
        record: bool = False,
        spans: dict[str, list[str]] | None = None,
    ):
        """`labels_only`: stop once every label is decided (same labels and confidences as a full run when
        labels precede text). `record`: keep each label decision's raw option scores (for calibration).
        `spans`: the ticket's candidate spans per copy-only field (none: such a field can only be null)."""
        self.plan = plan
        self.spans = spans or {}
        # Labels decided outside the language model (a classification head): field -> (label, confidence).
        self.forced: dict[str, tuple[str, float]] = {}
        # Copy-only values decided outside the language model (a copy scorer): field -> span or None.
        self.forced_spans: dict[str, str | None] = {}
        self.temperatures = temperatures or {}
        self.labels_only = labels_only
        self.labels: dict[tuple[str, ...], str] = {}
        self.trace: dict[str, list[tuple[torch.Tensor, int]]] | None = {} if record else None
        self.seg_i = 0
        self.node: TrieNode | None = None
        self.guide: Guide | None = None
        self.text_tokens: list[int] = []
        self.text_parts: list[str] = []
        self.out_ids: list[int] = []
        self.confidence: dict[str, float] = {}
        self._label_prob = 1.0
        self._bitmask: torch.Tensor | None = None
        self.done = False

    # -- driving ------------------------------------------------------------------------------
    def start(self) -> list[int]:
        """Forced tokens before the first decision (appended to the prompt in the prefill)."""
        return self._advance_forced([])

    def force(self, labels: dict[str, tuple[str, float]]) -> None:
        """Decide these label fields without the language model's logits (with this confidence).
        May be called after `start()`, before the first `step()`."""
        for name, (label, _) in labels.items():
            if label not in self.plan.label_ids.get(name, {}):
                raise ValueError(f"{name}={label!r} is not an allowed label")
        self.forced = dict(labels)

    def force_spans(self, values: dict[str, str | None]) -> None:
        """Decide copy-only fields without the language model: each value must be null or a candidate span."""
        for name, value in values.items():
            if value is not None and value not in self.spans.get(name, ()):
                raise ValueError(f"{name}={value!r} is not a candidate span of this ticket")
        self.forced_spans = dict(values)

    def step(self, logits: torch.Tensor) -> list[int]:
        seg = self.plan.segments[self.seg_i]
        if isinstance(seg, (Choice, SpanChoice)):
            return self._step_choice(seg, logits)
        assert isinstance(seg, Text)
        return self._step_text(seg, logits)

    # -- segments -----------------------------------------------------------------------------
    def _advance_forced(self, fed: list[int]) -> list[int]:
        """Walk forward through everything the schema forces; stop at the next real decision."""
        while self.seg_i < len(self.plan.segments):
            if self.labels_only and self.seg_i > self.plan.last_choice:
                self.seg_i = len(self.plan.segments)
                break
            seg = self.plan.segments[self.seg_i]
            if isinstance(seg, Literal):
                fed += seg.ids
                self.text_parts.append(seg.text)
                self.seg_i += 1
                continue
            if isinstance(seg, (Choice, SpanChoice)):
                if self.node is None:
                    root = (
                        seg.root if isinstance(seg, Choice) else self.plan.span_trie(self.spans.get(seg.slot.name, ()))
                    )
                    self.node, self._label_prob = root, 1.0
                    if isinstance(seg, Choice) and seg.slot.name in self.forced:
                        fed += self._take_forced(seg)
                        continue
                    if isinstance(seg, SpanChoice) and seg.slot.name in self.forced_spans:
                        fed += self._take_forced_span(seg, root)
                        continue
                # Single-child nodes are forced: the label is already decided.
                while len(self.node.children) == 1 and self.node.label is None:
                    ((tok, child),) = self.node.children.items()
                    fed.append(tok)
                    self.node = child
                if self.node.children:
                    break
                self._finish_choice(seg)
                continue
            if isinstance(seg, Text):
                if self.guide is None:
                    self.guide, self.text_tokens = Guide(seg.index), []
                break
        if self.seg_i >= len(self.plan.segments):
            self.done = True
        self.out_ids += fed
        # Tokens after the last decision need no forward pass: nothing depends on their logits.
        return [] if self.done else fed

    def _take_forced(self, seg: Choice) -> list[int]:
        """Walk a forced label's whole token path (no model step) and finish the choice."""
        label, confidence = self.forced[seg.slot.name]
        ids = self.plan.label_ids[seg.slot.name][label]
        node = seg.root
        for tok in ids:
            node = node.children[tok]
        self.node, self._label_prob = node, confidence
        self._finish_choice(seg)
        return list(ids)

    def _take_forced_span(self, seg: SpanChoice, root: TrieNode) -> list[int]:
        ids = self.plan.encode(self.plan.span_option(self.forced_spans[seg.slot.name]))
        node = root
        for tok in ids:
            node = node.children[tok]
        self.node = node
        self._finish_choice(seg)
        return ids

    def _finish_choice(self, seg: Choice | SpanChoice) -> None:
        assert self.node is not None and self.node.label is not None
        self.text_parts.append(self.node.label)
        if isinstance(seg, Choice):
            self.labels[seg.slot.path] = self.node.label
            self.confidence[seg.slot.name] = self._label_prob
        self.node = None
        self.seg_i += 1

    def _step_choice(self, seg: Choice | SpanChoice, logits: torch.Tensor) -> list[int]:
        assert self.node is not None
        if isinstance(seg, Choice) and seg.slot.name in self.forced and self.node is seg.root:
            return self._advance_forced(self._take_forced(seg))
        options = list(self.node.children)
        if self.node.label is not None:
            options.append(seg.end_token)
        raw = logits[options].float()
        probs = torch.softmax(raw / self.temperatures.get(seg.slot.name, 1.0), dim=-1)
        k = int(torch.argmax(probs))
        if self.trace is not None and isinstance(seg, Choice):
            self.trace.setdefault(seg.slot.name, []).append((raw.clone(), k))
        self._label_prob *= float(probs[k])
        if self.node.label is not None and k == len(options) - 1:
            self._finish_choice(seg)
            return self._advance_forced([])
        tok = options[k]
        self.node = self.node.children[tok]
        return self._advance_forced([tok])

    def _step_text(self, seg: Text, logits: torch.Tensor) -> list[int]:
        assert self.guide is not None
        guide = self.guide
        if len(self.text_tokens) >= seg.max_tokens:
            tok = self._closing_token(guide)
        else:
            if self._bitmask is None or self._bitmask.shape[-1] * 32 < logits.shape[-1]:
                self._bitmask = allocate_token_bitmask(logits.shape[-1])
            fill_next_token_bitmask(guide, self._bitmask)
            tok = int(torch.argmax(logits.masked_fill(~unpack_bitmask(self._bitmask, logits.shape[-1]), -torch.inf)))
        guide.advance(tok, False)
        self.text_tokens.append(tok)
        if guide.is_finished():
            self.text_parts.append(self.plan.tokenizer.decode(self.text_tokens))
            self.guide = None
            self.seg_i += 1
            return self._advance_forced([tok])
        self.out_ids.append(tok)
        return [tok]

    def _closing_token(self, guide: Guide) -> int:
        """Budget spent: end the value with the shortest valid close (a quote, else `null`-completing tokens)."""
        allowed = guide.get_tokens()
        for tok in self.plan.quote_ids:
            if tok in allowed:
                return tok
        # Mid-escape or mid-`null`: any allowed token keeps validity; the budget check repeats next step.
        return int(allowed[0])

    # -- result -------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def result(self) -> dict[str, Any]:
        if self.labels_only:
            out: dict[str, Any] = {}
            for path, label in self.labels.items():
                target = out.setdefault(path[0], {}) if len(path) == 2 else out
                target[path[-1]] = label
            return out
        output: dict[str, Any] = json.loads(self.text)
        return output


_SHIFTS = torch.arange(32, dtype=torch.int32)


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Outlines' packed int32 token bitmask -> bool per token. (Outlines' own kernel is
    torch.compile'd, which costs a C++ toolchain and a compile at first use on CPU.)"""
    return ((bitmask.reshape(-1, 1) >> _SHIFTS) & 1).bool().reshape(-1)[:vocab_size]
