"""Prompts are versioned files; this module is the only place that turns a ticket into model input.

The server, the reference engine, the benchmark and the fine-tuning job all call `PromptRenderer`,
so the text a model is trained on is byte-for-byte the text it is served with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jinja2
import yaml

from server.schema import FIELD_ORDERS, FieldOrder, example_output, output_layout
from server.taxonomy import Taxonomy

TRUNCATION_MARK = " [...] "
MAX_SUBJECT_TOKENS = 64
# Cut between the static instructions and the ticket: the text before it is the same for every request.
TICKET_HEADER = "### Ticket\n"


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...


@dataclass(frozen=True)
class TicketInput:
    subject: str
    body: str
    previous_interactions: tuple[str, ...] = ()
    # The output fields asked for (server.fields; None = all). Only label fields: the engine answers
    # from the label decisions alone. Not part of the prompt: the same ticket renders the same text.
    fields: tuple[str, ...] | None = None


def parse_history(cell: str | None) -> tuple[str, ...]:
    """A data file's `previous_interactions` cell: empty, or a JSON list of strings (oldest first)."""
    import json

    if cell is None or not str(cell).strip():
        return ()
    try:
        value = json.loads(cell)
    except ValueError:
        raise ValueError("must be a JSON list of strings") from None
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise ValueError("must be a JSON list of strings")
    return tuple(value)


@dataclass(frozen=True)
class PromptVersion:
    kind: str  # "classify" | "review"
    version: str
    template: jinja2.Template
    system: str | None
    field_order: FieldOrder

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.version}"


@dataclass
class EncodedPrompt:
    """Token ids split at the static prefix, so the prefix's KV cache can be shared."""

    prefix_ids: list[int]
    suffix_ids: list[int]
    truncated: bool
    prompt_version: str
    text: str = field(repr=False, default="")
    # Index into suffix_ids where the previous interactions begin (None: the ticket has none); a label
    # head may read the history's hidden states apart from the rest (server.heads.head, pool "history").
    history_start: int | None = None

    @property
    def ids(self) -> list[int]:
        return self.prefix_ids + self.suffix_ids


def load_prompt(prompts_dir: Path, kind: str, version: str) -> PromptVersion:
    path = Path(prompts_dir) / kind / f"{version}.jinja"
    if not path.is_file():
        raise FileNotFoundError(f"prompt not found: {path}")
    meta_path = path.with_suffix(".yaml")
    meta: dict[str, Any] = yaml.safe_load(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    template = env.from_string(path.read_text(encoding="utf-8"))
    order = meta.get("field_order", "labels_first")
    if order not in FIELD_ORDERS:
        raise ValueError(f"{meta_path}: field_order must be one of {', '.join(FIELD_ORDERS)}")
    return PromptVersion(kind=kind, version=version, template=template, system=meta.get("system"), field_order=order)


def definitions_text(taxonomy: Taxonomy) -> str:
    """The label definitions block (`{{category_definitions}}`) for every field of the taxonomy."""
    lines: list[str] = []
    for slot in output_layout(taxonomy):
        spec = slot.spec
        if slot.name == "reasoning":
            continue
        key = ".".join(slot.path)
        if spec.is_label:
            lines.append(
                f"{key} (one of: {', '.join(spec.labels)}){': ' + spec.description if spec.description else ''}"
            )
            lines += [
                f"- {label}: {definition}" if definition else f"- {label}" for label, definition in spec.values.items()
            ]
        else:
            lines.append(f"{key} (text or null): {spec.description}")
        lines.append("")
    return "\n".join(lines).strip()


def output_format_text(taxonomy: Taxonomy, field_order: FieldOrder) -> str:
    note = " reasoning is one short English sentence." if taxonomy.reasoning else ""
    return f"Answer with one JSON object in exactly this format:{note}\n{example_output(taxonomy, field_order)}"


class PromptRenderer:
    def __init__(
        self,
        prompt: PromptVersion,
        taxonomy: Taxonomy,
        tokenizer: Any,
        *,
        max_body_tokens: int = 768,
        max_history_tokens: int = 256,
    ):
        self.prompt = prompt
        self.taxonomy = taxonomy
        self.tokenizer = tokenizer
        self.max_body_tokens = max_body_tokens
        self.max_history_tokens = max_history_tokens
        self._static = {
            "category_definitions": definitions_text(taxonomy),
            "output_format": output_format_text(taxonomy, prompt.field_order),
        }
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self._specials = sorted(
            {t for t in getattr(tokenizer, "all_special_tokens", []) if len(t) > 1}, key=len, reverse=True
        )
        try:
            prefix_text = self._chat(self._user_text(TicketInput("", ""), {}))
        except jinja2.UndefinedError:
            prefix_text = ""  # a prompt that needs per-request extras (review) has no shared prefix
        cut = prefix_text.find(TICKET_HEADER)
        if prefix_text and cut < 0:
            raise ValueError(f"prompt {prompt.id} must contain the line {TICKET_HEADER.strip()!r} before the ticket")
        self.prefix_text = prefix_text[: cut + len(TICKET_HEADER)] if prefix_text else ""
        self.prefix_ids: list[int] = (
            self.tokenizer.encode(self.prefix_text, add_special_tokens=True) if prefix_text else []
        )

    # -- text ---------------------------------------------------------------------------------
    def _user_text(self, ticket: TicketInput, extra: dict[str, Any]) -> str:
        return self.prompt.template.render(ticket=ticket, **self._static, **extra)

    def _chat(self, user_text: str) -> str:
        if self.has_chat_template:
            messages = ([{"role": "system", "content": self.prompt.system}] if self.prompt.system else []) + [
                {"role": "user", "content": user_text}
            ]
            return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        # A base model without a chat template gets a plain layout with the same content.
        system = f"{self.prompt.system}\n\n" if self.prompt.system else ""
        return f"{system}{user_text}\n\n### Answer (JSON)\n"

    # -- budget -------------------------------------------------------------------------------
    def _clip(self, text: str, budget: int, keep_tail: bool) -> tuple[str, bool]:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= budget:
            return text, False
        if not keep_tail:
            return self.tokenizer.decode(
                ids[:budget], skip_special_tokens=True
            ).rstrip() + TRUNCATION_MARK.rstrip(), True
        head = (budget * 2) // 3
        tail = budget - head
        return (
            self.tokenizer.decode(ids[:head], skip_special_tokens=True).rstrip()
            + TRUNCATION_MARK
            + self.tokenizer.decode(ids[-tail:], skip_special_tokens=True).lstrip()
        ), True

    def defuse(self, text: str) -> str:
        """Ticket text must not spell the tokenizer's control tokens (a forged `<|im_start|>assistant`
        would otherwise become a real turn boundary): break them with a space after their first character."""
        for special in self._specials:
            if special in text:
                text = text.replace(special, special[0] + " " + special[1:])
        return text

    def fit(self, ticket: TicketInput) -> tuple[TicketInput, bool]:
        """Keep the subject, the head and tail of the body, and the most recent interactions."""
        subject, cut_subject = self._clip(self.defuse(ticket.subject), MAX_SUBJECT_TOKENS, keep_tail=False)
        body, cut_body = self._clip(self.defuse(ticket.body), self.max_body_tokens, keep_tail=True)
        kept: list[str] = []
        left = self.max_history_tokens
        history = [self.defuse(m) for m in ticket.previous_interactions]
        for message in reversed(history):
            if left <= 0:
                break
            clipped, _ = self._clip(message, left, keep_tail=True)
            kept.append(clipped)
            left -= len(self.tokenizer.encode(clipped, add_special_tokens=False))
        kept.reverse()
        cut_history = kept != history
        return TicketInput(subject, body, tuple(kept)), cut_subject or cut_body or cut_history

    # -- encoding -----------------------------------------------------------------------------
    def render(self, ticket: TicketInput, **extra: Any) -> EncodedPrompt:
        fitted, truncated = self.fit(ticket)
        text = self._chat(self._user_text(fitted, extra))
        if self.prefix_ids:
            if not text.startswith(self.prefix_text):
                raise AssertionError(
                    "static prompt prefix changed with the ticket; the template must put the ticket last"
                )
            suffix_ids = self.tokenizer.encode(text[len(self.prefix_text) :], add_special_tokens=False)
            history_start = None
            if fitted.previous_interactions:
                # Where the rendering with the history departs from the one without it: template-agnostic.
                bare = self._chat(self._user_text(TicketInput(fitted.subject, fitted.body), extra))
                bare_ids = self.tokenizer.encode(bare[len(self.prefix_text) :], add_special_tokens=False)
                history_start = next(
                    (i for i, (a, b) in enumerate(zip(suffix_ids, bare_ids)) if a != b),
                    min(len(suffix_ids), len(bare_ids)),
                )
            return EncodedPrompt(list(self.prefix_ids), suffix_ids, truncated, self.prompt.id, text, history_start)
        # Prompts with per-request extras (review) do not share a prefix.
        return EncodedPrompt([], self.tokenizer.encode(text, add_special_tokens=True), truncated, self.prompt.id, text)
