"""Temperature scaling per label field, fitted on the adapter's held-out split.

The server's confidence for a label is the product, along the label's token path, of the
renormalised probabilities of the allowed next tokens (server.engines.decoding). Scaling those
logits by 1/T changes the confidence but never the chosen label (argmax is invariant), so one T per
field is fitted by minimising the log-loss of "the chosen label is right" over the held-out tickets,
and stored in the manifest; the server applies it. ECE before and after is recorded alongside.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune.data import read_heldout
from server.config import Settings, load_settings
from server.evaluation.metrics import expected_calibration_error
from server.registry import resolve_project_path
from server.taxonomy import load_taxonomy

GRID = [math.exp(x / 40) for x in range(-80, 121)]  # T from 0.14 to 20


def confidence_at(trace: list[tuple[Any, int]], temperature: float) -> float:
    import torch

    p = 1.0
    for scores, k in trace:
        p *= float(torch.softmax(scores / temperature, dim=-1)[k])
    return p


def fit_temperature(traces: list[list[tuple[Any, int]]], correct: list[bool]) -> tuple[float, float, float]:
    """(T, ECE at T=1, ECE at T): grid search of the log-loss of correctness (robust, no optimiser state)."""
    best_t, best_loss = 1.0, float("inf")
    for t in GRID:
        loss = 0.0
        for tr, ok in zip(traces, correct):
            p = min(max(confidence_at(tr, t), 1e-6), 1 - 1e-6)
            loss -= math.log(p) if ok else math.log(1 - p)
        if loss < best_loss:
            best_t, best_loss = t, loss
    before = expected_calibration_error([confidence_at(tr, 1.0) for tr in traces], correct)
    after = expected_calibration_error([confidence_at(tr, best_t) for tr in traces], correct)
    return best_t, before, after


def calibrate(
    adapter_dir: str | Path, settings: Settings | None = None, *, progress: bool = True, batch_size: int = 16
) -> dict[str, Any]:
    """Fit and store the temperatures of the adapter in `adapter_dir` (uses its heldout.jsonl)."""
    from tqdm import tqdm

    from server.engines.transformers_engine import BatchRunner
    from server.registry import AdapterEntry, Registry

    adapter_dir = Path(adapter_dir)
    manifest = json.loads((adapter_dir / "manifest.json").read_text(encoding="utf-8"))
    held = read_heldout(adapter_dir / "heldout.jsonl")
    if not held:
        raise ValueError(f"{adapter_dir}: empty held-out split, nothing to calibrate on")
    settings = settings or load_settings()
    base = manifest.get("base_model", {}).get("path")
    if base:  # calibrate against the base the adapter was trained on
        local = resolve_project_path(base)
        settings = settings.model_copy(
            update={"model": settings.model.model_copy(update={"base": str(local) if local.exists() else base})}
        )
    taxonomy = load_taxonomy(manifest.get("config", {}).get("taxonomy", settings.taxonomy))
    raw_manifest = dict(manifest)
    raw_manifest.pop("calibration", None)  # fit on the raw scores
    runner = BatchRunner(settings, taxonomy, adapter=AdapterEntry(manifest["name"], adapter_dir, raw_manifest))
    runner.labels_only, runner.record = True, True
    outputs: list[Any] = []
    for i in tqdm(range(0, len(held), batch_size), desc="calibrating", unit="batch", disable=not progress):
        outputs += runner.run([ex.ticket for ex in held[i : i + batch_size]])
    result: dict[str, Any] = {"temperatures": {}, "ece_before": {}, "ece_after": {}, "accuracy": {}, "n": len(held)}
    for spec in taxonomy.label_fields:
        traces, correct = [], []
        for ex, out in zip(held, outputs):
            trace = (getattr(out, "extra", {}) or {}).get("trace", {}).get(spec.name)
            if not trace:
                continue
            gold = (
                (ex.answer.get("extracted_info") or {}).get(spec.name)
                if spec.in_extracted_info
                else ex.answer.get(spec.name)
            )
            pred = (
                (out.output.get("extracted_info") or {}).get(spec.name)
                if spec.in_extracted_info
                else out.output.get(spec.name)
            )
            traces.append(trace)
            correct.append(pred == gold)
        if not traces:
            continue
        t, before, after = fit_temperature(traces, correct)
        result["temperatures"][spec.name] = round(t, 4)
        result["ece_before"][spec.name] = round(before, 4)
        result["ece_after"][spec.name] = round(after, 4)
        result["accuracy"][spec.name] = round(sum(correct) / len(correct), 4)
    result["method"] = (
        "temperature scaling per field; log-loss of correctness on the held-out split; grid T in [0.14, 20]"
    )
    result["fitted_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    # Under the registry lock: `triage eval` may be recording an eval in the same manifest.
    Registry(settings.model.registry).update_manifest(adapter_dir, lambda m: m.__setitem__("calibration", result))
    return result
