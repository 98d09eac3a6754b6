"""Pooled hidden states of the served model for a set of tickets (the label head's features), cached.

`BatchRunner.features` runs the same prefill as serving, so a head is fitted on the numbers it will read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import numpy as np

from finetune.config import PoolKind
from finetune.data import Example
from server.config import PROJECT_ROOT
from server.heads.head import Pool

if TYPE_CHECKING:
    from server.engines.embedded.runner import BatchRunner

log = logging.getLogger(__name__)

# Every layer a head or the sweep may read, mean and last token: one prefill yields all of them, so they
# are extracted together and cached, and trying other pools or regularisation needs no model run.
CACHE_LAYERS = (6, 12, 16, 20, 24, 28, 30)
CACHE_POOLS = [Pool(layer, how) for layer in CACHE_LAYERS for how in get_args(PoolKind)]


def extract(
    runner: BatchRunner, examples: Sequence[Example], pools: Sequence[Pool], progress: bool, desc: str, batch: int = 64
) -> np.ndarray:
    """Features of `pools` for every example. With all pools in CACHE_POOLS the full set is extracted and
    cached under var/features/, keyed by the model's weights, the dtype and the set of tickets (in any
    order: the sweep and the head job read the same tickets in different orders)."""
    from tqdm import tqdm

    cache = _cache_path(runner, examples) if all(p in CACHE_POOLS for p in pools) else None
    order = sorted(range(len(examples)), key=lambda i: _ticket_key(examples[i]))
    if cache is not None and cache.is_file():
        stored = np.load(cache)  # rows in sorted ticket order
        full = np.empty_like(stored)
        full[order] = stored
        log.info("features of %d tickets from %s", len(examples), cache)
    else:
        wanted = CACHE_POOLS if cache is not None else list(pools)
        parts = []
        with tqdm(total=len(examples), desc=desc, unit="ticket", disable=not progress) as bar:
            for i in range(0, len(examples), batch):
                chunk = examples[i : i + batch]
                parts.append(runner.features([ex.ticket for ex in chunk], wanted))
                bar.update(len(chunk))
        full = np.concatenate(parts)
        if cache is None:
            return full
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, full[order])
    return select_pools(full, CACHE_POOLS, pools)


def _ticket_key(ex: Example) -> str:
    return json.dumps(
        [ex.uid, ex.ticket.subject, ex.ticket.body, list(ex.ticket.previous_interactions)], ensure_ascii=False
    )


def select_pools(features: np.ndarray, have: Sequence[Pool], want: Sequence[Pool]) -> np.ndarray:
    d = features.shape[1] // len(have)
    return np.concatenate([features[:, have.index(p) * d : (have.index(p) + 1) * d] for p in want], axis=1)


def _cache_path(runner: BatchRunner, examples: Sequence[Example]) -> Path:
    adapter = (runner.adapter.manifest.adapter_files or {}) if runner.adapter is not None else {}
    lora = {k: v for k, v in adapter.items() if not k.startswith("head")}
    key = json.dumps(
        [
            str(runner.settings.model.base),
            lora,
            str(runner.dtype),
            runner.prompt_version,
            [p.__dict__ for p in CACHE_POOLS],
            sorted(_ticket_key(ex) for ex in examples),
        ],
        default=str,
    )
    return PROJECT_ROOT / "var" / "features" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"
