"""Shared-prefix ("cascade") attention for batched decoding on CPU.

Every ticket's prompt starts with the same static prefix. Copying its KV cache into every batch row
makes each decode step read B copies of it (at B=32 and a 674-token prefix: ~1 GB per step on a
135M model), which dominated decoding on this memory-bound CPU. Here the batch cache holds only
each ticket's own tokens; the prefix KV is kept once, and attention is computed in two parts whose
softmax is merged exactly (shared max, summed normalisers), the prefix part as one GEMM over all
rows of the batch.

The function is registered with transformers' attention interface when a model enables it (`enable`);
outside a `shared_prefix(...)` block it is plain SDPA, so the same model object serves every other
caller unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "triage_cascade"
_PREFIX: contextvars.ContextVar[list[tuple[torch.Tensor, torch.Tensor]] | None] = contextvars.ContextVar(
    "triage_prefix", default=None
)


@contextlib.contextmanager
def shared_prefix(kv: list[tuple[torch.Tensor, torch.Tensor]] | None) -> Iterator[None]:
    token = _PREFIX.set(kv)
    try:
        yield
    finally:
        _PREFIX.reset(token)


def cascade_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    prefix = _PREFIX.get()
    if prefix is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    pk, pv = prefix[module.layer_idx]  # (1, Hkv, P, D)
    B, H, q, D = query.shape
    Hkv, kv = key.shape[1], key.shape[2]
    G = H // Hkv  # query heads per KV head (grouped-query attention); groups are contiguous
    P = pk.shape[2]
    scale = scaling if scaling is not None else D**-0.5
    qg = query.reshape(B, Hkv, G * q, D)
    s_suf = torch.matmul(qg, key.transpose(-1, -2)) * scale  # (B, Hkv, G*q, kv)
    rows = qg.transpose(0, 1).reshape(Hkv, B * G * q, D)
    s_pre = (torch.matmul(rows, pk[0].transpose(-1, -2)) * scale).reshape(Hkv, B, G * q, P).transpose(0, 1)

    if attention_mask is None:  # causal, nothing padded: query i sees keys up to kv - q + i
        allowed = torch.ones(q, kv, dtype=torch.bool, device=query.device).tril(kv - q)
        allowed = allowed.view(1, 1, 1, q, kv)
    else:
        allowed = attention_mask[:, :, -q:, -kv:]
        allowed = allowed if allowed.dtype == torch.bool else allowed == 0
        allowed = allowed.unsqueeze(2)  # (B, 1, 1, q, kv)
    allowed = allowed.expand(B, 1, G, q, kv).reshape(B, 1, G * q, kv)
    s_suf = s_suf.masked_fill(~allowed, float("-inf"))

    m = torch.maximum(s_pre.amax(-1, keepdim=True), s_suf.amax(-1, keepdim=True))  # prefix rows are never all masked
    e_pre, e_suf = torch.exp(s_pre - m), torch.exp(s_suf - m)
    denom = e_pre.sum(-1, keepdim=True) + e_suf.sum(-1, keepdim=True)
    out_pre = (
        torch.matmul(e_pre.transpose(0, 1).reshape(Hkv, B * G * q, P), pv[0]).reshape(Hkv, B, G * q, D).transpose(0, 1)
    )
    out = (out_pre + torch.matmul(e_suf, value)) / denom
    return out.reshape(B, H, q, D).transpose(1, 2).contiguous(), None


def register() -> None:
    """Make NAME known to transformers (a process-wide registry; registering twice is harmless)."""
    AttentionInterface.register(NAME, cascade_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def supports_cascade(model: Any) -> bool:
    """Only models whose every layer is full (global) attention with a plain KV cache."""
    config = model.config
    layer_types = getattr(config, "layer_types", None)
    if layer_types and any(t != "full_attention" for t in layer_types):
        return False
    if getattr(config, "sliding_window", None):
        return False
    return getattr(config, "_attn_implementation", "sdpa") in ("sdpa", "eager", NAME)


def enable(model: Any) -> bool:
    if not supports_cascade(model):
        return False
    register()
    model.set_attn_implementation(NAME)
    return True
