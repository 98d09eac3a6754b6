"""Micro-batches of encoded examples: length-grouped order, right padding, and the loss on answer tokens."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from finetune.encode import IGNORE, Encoded

if TYPE_CHECKING:
    import torch


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    keep: int  # logits are computed for the last `keep` positions only


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Length-grouped batches (little padding), in a seeded random order."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * 32
    batches: list[list[int]] = []
    for i in range(0, len(order), mega):
        chunk = sorted(order[i : i + mega], key=lambda j: lengths[j])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(rows: list[Encoded], pad_id: int, device: torch.device) -> Batch:
    """Right padding (a left-padded row's pad queries see no key at all: a fully masked softmax row
    that some attention kernels turn into NaN, which then leaks through 0 * NaN). Logits are computed
    only for the last K positions, which cover every row's answer."""
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        ids[i, :n] = torch.tensor(r.input_ids)
        labels[i, :n] = torch.tensor(r.labels)
        mask[i, :n] = 1
    positions = torch.arange(width).unsqueeze(0).expand(len(rows), -1)
    keep = width - min(len(r.input_ids) - r.answer_len for r in rows) + 1
    return Batch(ids.to(device), mask.to(device), positions.to(device), labels.to(device), keep)


def answer_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens (the prompt's labels are IGNORE)."""
    import torch.nn.functional as F

    keep = batch.keep
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=keep,
    )
    logits = out.logits[:, :-1].float()
    target = batch.labels[:, -keep + 1 :]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE)
