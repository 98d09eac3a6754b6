"""Example -> (input_ids, labels) with the server's own prompt renderer and decoding plan.

The prompt is rendered by `server.prompts.PromptRenderer` (same template, same clipping budgets,
same chat template) and the answer is tokenised by `DecodingPlan.answer_token_ids`, the split the
constrained decoder produces at serving time. Loss is on the answer tokens only (labels -100 on the prompt).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.data import Example
from server.engines.decoding import DecodingPlan
from server.prompts import EncodedPrompt, PromptRenderer, load_prompt
from server.schema import output_layout
from server.taxonomy import Taxonomy

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    answer_len: int


class ExampleEncoder:
    def __init__(
        self,
        tokenizer: Any,
        taxonomy: Taxonomy,
        *,
        prompts_dir: Path,
        prompt_version: str,
        max_body_tokens: int,
        max_history_tokens: int,
        max_string_tokens: int,
        max_reasoning_tokens: int,
        labels_only: bool = False,
    ):
        prompt = load_prompt(prompts_dir, "classify", prompt_version)
        self.prompt_id = prompt.id
        self.renderer = PromptRenderer(
            prompt, taxonomy, tokenizer, max_body_tokens=max_body_tokens, max_history_tokens=max_history_tokens
        )
        # No vocabulary: this plan only tokenises answers, it never decodes.
        self.plan = DecodingPlan(
            output_layout(taxonomy, prompt.field_order),
            tokenizer,
            None,
            max_string_tokens=max_string_tokens,
            max_reasoning_tokens=max_reasoning_tokens,
        )
        self.labels_only = labels_only

    def prompt(self, example: Example) -> EncodedPrompt:
        return self.renderer.render(example.ticket)

    def encode(self, example: Example) -> Encoded:
        prompt_ids = self.prompt(example).ids
        answer = self.plan.answer_token_ids(example.answer, labels_only=self.labels_only)
        return Encoded(prompt_ids + answer, [IGNORE] * len(prompt_ids) + answer, len(answer))
