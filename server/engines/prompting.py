"""Which prompts a runner serves: the classify prompt its adapter was trained with, the review prompt
when it can share a batch with it, and the token vocabulary the constrained decoder indexes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from server.config import Settings
from server.prompts import PromptRenderer, PromptVersion, TicketInput, load_prompt
from server.taxonomy import Taxonomy

if TYPE_CHECKING:
    from server.registry import AdapterManifest

log = logging.getLogger(__name__)


def outlines_vocabulary(tokenizer: Any) -> Any:
    """The token vocabulary exactly as Outlines builds it for a transformers model."""
    from outlines.backends.outlines_core import OutlinesCoreBackend
    from outlines.models.transformers import TransformerTokenizer

    tt = TransformerTokenizer(tokenizer)
    return OutlinesCoreBackend.create_outlines_core_vocabulary(
        tokenizer.get_vocab(), tokenizer.eos_token_id, tokenizer.eos_token, tt.convert_token_to_string
    )


def prompt_version_for(settings: Settings, manifest: AdapterManifest | None) -> str:
    """An adapter is trained on one prompt version and must be served with it: its manifest decides,
    and an explicitly configured different version is refused rather than silently mis-serving."""
    configured = f"classify/{settings.prompt.version}"
    trained = manifest.prompt_version if manifest is not None else None
    if not trained:
        return configured
    if "version" in settings.prompt.model_fields_set and trained != configured:
        raise ValueError(
            f"adapter {manifest.name if manifest else None!r} was trained with prompt {trained} but {configured} is configured"
        )
    return trained


def classify_renderer(settings: Settings, taxonomy: Taxonomy, tokenizer: Any, version: str) -> PromptRenderer:
    """The renderer of `version` ("classify/v2") under the settings' text budgets."""
    p = settings.prompt
    prompt = load_prompt(p.dir, "classify", version.removeprefix("classify/"))
    return PromptRenderer(
        prompt, taxonomy, tokenizer, max_body_tokens=p.max_body_tokens, max_history_tokens=p.max_history_tokens
    )


def review_renderer(
    settings: Settings, taxonomy: Taxonomy, tokenizer: Any, classify: PromptRenderer
) -> PromptRenderer | None:
    """The review prompt, if it can run in the same batches as `classify`: it must share its static
    prefix (the cached KV and the shared-prefix attention assume one prefix per batch)."""
    p = settings.prompt
    base: PromptVersion = classify.prompt
    version = base.version if p.review_version == "auto" else p.review_version
    try:
        review = load_prompt(p.dir, "review", version)
    except FileNotFoundError:
        return None
    if review.field_order != base.field_order or review.system != base.system:
        log.warning(
            "review/%s does not match classify/%s (system message or field order): local re-review disabled",
            version,
            base.version,
        )
        return None
    renderer = PromptRenderer(
        review, taxonomy, tokenizer, max_body_tokens=p.max_body_tokens, max_history_tokens=p.max_history_tokens
    )
    probe = renderer.render(TicketInput("s", "b"), low_confidence_fields="x", previous_result="{}")
    if classify.prefix_text and not probe.text.startswith(classify.prefix_text):
        log.warning(
            "review/%s does not start with classify/%s's prefix: local re-review disabled", version, base.version
        )
        return None
    return renderer
