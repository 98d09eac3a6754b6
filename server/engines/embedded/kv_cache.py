"""The batch KV cache of continuous decoding: rows join (their prefilled KV left-padded into one
preallocated buffer) and leave (their rows dropped, padding columns no one uses cropped) between steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

DECODE_HEADROOM = 256  # KV slots reserved for generated tokens; grows by doubling if exceeded

# One ticket's prefilled KV: (keys, values) per layer, each (1, heads, tokens, head_dim).
RowKV = list[tuple[torch.Tensor, torch.Tensor]]


class PreallocatedLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """A KV-cache layer that writes new tokens into spare capacity instead of re-concatenating the
    whole cache each step (that copy dominated batched decoding on CPU)."""

    def __init__(self, shape: tuple[int, int, int, int], capacity: int, like: torch.Tensor):
        super().__init__()  # type: ignore[no-untyped-call]
        B, H, n, D = shape
        self.kbuf = like.new_zeros((B, H, capacity, D))
        self.vbuf = like.new_zeros((B, H, capacity, D))
        self.length = n
        self.dtype, self.device, self.is_initialized = like.dtype, like.device, True
        self._views()

    def _views(self) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.kbuf[:, :, : self.length], self.vbuf[:, :, : self.length]
        self.keys, self.values = keys, values
        return keys, values

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = key_states.shape[-2]
        if self.length + n > self.kbuf.shape[2]:
            grow = max(self.kbuf.shape[2], n)
            self.kbuf = torch.cat(
                [self.kbuf, self.kbuf.new_zeros(*self.kbuf.shape[:2], grow, self.kbuf.shape[3])], dim=2
            )
            self.vbuf = torch.cat(
                [self.vbuf, self.vbuf.new_zeros(*self.vbuf.shape[:2], grow, self.vbuf.shape[3])], dim=2
            )
        self.kbuf[:, :, self.length : self.length + n] = key_states
        self.vbuf[:, :, self.length : self.length + n] = value_states
        self.length += n
        return self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.kbuf, self.vbuf = self.kbuf[indices], self.vbuf[indices]
        self._views()

    def crop_left(self, n: int) -> None:
        """Drop the n oldest columns (padding no remaining row uses); a view, no copy."""
        self.kbuf, self.vbuf = self.kbuf[:, :, n:], self.vbuf[:, :, n:]
        self.length -= n
        self._views()


def new_cache(config: Any, kv: RowKV | None = None) -> DynamicCache:
    return DynamicCache(ddp_cache_data=kv, config=config) if kv else DynamicCache(config=config)


class BatchCache:
    """The running batch's KV and attention mask. Rows are left-padded to a common width; padding is
    masked out (positions are explicit, so padding never shifts a row)."""

    def __init__(self, config: Any, device: torch.device):
        self.config, self.device = config, device
        self.cache: DynamicCache | None = None
        self.layers: list[PreallocatedLayer] = []  # the cache's layers, typed
        self.mask = torch.zeros(0, 0, dtype=torch.long, device=device)
        self.rows = 0

    def add(self, fresh: Sequence[RowKV]) -> None:
        """Append prefilled rows below the running ones."""
        if not fresh:
            return
        old_w = self.mask.shape[1] if self.rows else 0
        width = max([old_w] + [kv[0][0].shape[2] for kv in fresh])
        b0, B = self.rows, self.rows + len(fresh)
        mask = torch.zeros(B, width, dtype=torch.long, device=self.device)
        if b0:
            mask[:b0, width - old_w :] = self.mask
        layers = []
        for li in range(len(fresh[0])):
            k0 = fresh[0][li][0]
            layer = PreallocatedLayer((B, k0.shape[1], width, k0.shape[3]), capacity=width + DECODE_HEADROOM, like=k0)
            if b0:
                old = self.layers[li]
                layer.kbuf[:b0, :, width - old_w : width] = old.kbuf[:, :, : old.length]
                layer.vbuf[:b0, :, width - old_w : width] = old.vbuf[:, :, : old.length]
            for j, kv in enumerate(fresh):
                k, v = kv[li]
                n = k.shape[2]
                layer.kbuf[b0 + j, :, width - n : width] = k[0]
                layer.vbuf[b0 + j, :, width - n : width] = v[0]
            layers.append(layer)
        for j, kv in enumerate(fresh):
            mask[b0 + j, width - kv[0][0].shape[2] :] = 1
        self.cache = new_cache(self.config)
        self.cache.layers = self.layers = layers  # type: ignore[assignment]
        self.mask = mask
        self.rows = B

    def extend(self, width: int) -> None:
        """Unmask the `width` tokens every row feeds in the next step."""
        ones = torch.ones((self.rows, width), dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, ones], dim=1)

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows` (finished tickets leave the batch) and crop the columns only they used."""
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        assert self.cache is not None
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        self.rows = len(rows)
        if not rows:
            return
        first = int(self.mask.any(dim=0).nonzero()[0])
        if first:
            self.mask = self.mask[:, first:]
            for layer in self.layers:
                layer.crop_left(first)
