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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.heldout import HeldOut, read_heldout
from server.config import Settings, load_settings
from server.evaluation.metrics import expected_calibration_error
from server.registry import resolve_project_path
from server.results import label_of
from server.taxonomy import load_taxonomy

if TYPE_CHECKING:
    import torch

GRID = [math.exp(x / 40) for x in range(-80, 121)]  # T from 0.14 to 20
# One decoding step of a label: the allowed tokens' raw scores and the index of the token chosen.
Trace = list[tuple["torch.Tensor", int]]


@dataclass
class FieldTraces:
    """One label field's held-out evidence: each ticket's decoding trace and whether its label was right."""

    traces: list[Trace] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)


def confidence_at(trace: Trace, temperature: float) -> float:
    import torch

    p = 1.0
    for scores, k in trace:
        p *= float(torch.softmax(scores / temperature, dim=-1)[k])
    return p


def correctness_nll(traces: list[Trace], correct: list[bool], temperature: float) -> float:
    """The log-loss of "the chosen label is right" at this temperature (what the fit minimises)."""
    loss = 0.0
    for tr, ok in zip(traces, correct, strict=True):
        p = min(max(confidence_at(tr, temperature), 1e-6), 1 - 1e-6)
        loss -= math.log(p) if ok else math.log(1 - p)
    return loss


def fit_temperature(traces: list[Trace], correct: list[bool]) -> tuple[float, float, float]:
    """(T, ECE at T=1, ECE at T): grid search of the log-loss of correctness (robust, no optimiser state)."""
    best_t, best_loss = 1.0, float("inf")
    for t in GRID:
        loss = correctness_nll(traces, correct, t)
        if loss < best_loss:
            best_t, best_loss = t, loss
    before = expected_calibration_error([confidence_at(tr, 1.0) for tr in traces], correct)
    after = expected_calibration_error([confidence_at(tr, best_t) for tr in traces], correct)
    return best_t, before, after


def held_out_traces(
    adapter_dir: str | Path,
    settings: Settings | None = None,
    *,
    progress: bool = True,
    batch_size: int = 16,
    split: HeldOut | None = None,
) -> dict[str, FieldTraces]:
    """Run the adapter, uncalibrated, on its held-out split: per label field, the traces and correctness."""
    from tqdm import tqdm

    from server.engines import open_batch_runner, open_runner
    from server.registry import AdapterEntry, AdapterManifest

    adapter_dir = Path(adapter_dir)
    manifest = json.loads((adapter_dir / "manifest.json").read_text(encoding="utf-8"))
    settings = settings or load_settings()
    held = (split or read_heldout(adapter_dir, settings)).examples
    if not held:
        raise ValueError(f"{adapter_dir}: empty held-out split, nothing to calibrate on")
    base = manifest.get("base_model", {}).get("path")
    if base:  # calibrate against the base the adapter was trained on
        local = resolve_project_path(base)
        settings = settings.variant(model={"base": str(local) if local.exists() else base})
    taxonomy = load_taxonomy(manifest.get("config", {}).get("taxonomy", settings.taxonomy))
    raw_manifest = dict(manifest)
    raw_manifest.pop("calibration", None)  # fit on the raw scores
    entry = AdapterEntry(
        manifest["name"], adapter_dir, AdapterManifest.parse(raw_manifest, adapter_dir / "manifest.json")
    )
    # The embedded runner unless engine.kind names another one that records traces (vllm: from its logprobs).
    runner: Any = (
        open_batch_runner(settings, taxonomy, adapter=entry)
        if settings.engine.kind != "vllm"
        else open_runner(settings, taxonomy, adapter=entry)
    )
    runner.labels_only, runner.record = True, True
    outputs: list[Any] = []
    for i in tqdm(range(0, len(held), batch_size), desc="calibrating", unit="batch", disable=not progress):
        outputs += runner.run([ex.ticket for ex in held[i : i + batch_size]])
    fields: dict[str, FieldTraces] = {}
    for spec in taxonomy.label_fields:
        evidence = FieldTraces()
        for ex, out in zip(held, outputs, strict=True):
            trace = (getattr(out, "extra", {}) or {}).get("trace", {}).get(spec.name)
            if not trace:
                continue
            gold = label_of(ex.answer, spec.name)
            pred = label_of(out.output, spec.name)
            evidence.traces.append(trace)
            evidence.correct.append(pred == gold)
        if evidence.traces:
            fields[spec.name] = evidence
    return fields


def calibrate(
    adapter_dir: str | Path, settings: Settings | None = None, *, progress: bool = True, batch_size: int = 16
) -> dict[str, Any]:
    """Fit and store the temperatures of the adapter in `adapter_dir` on its held-out split (rows whose
    text is gone or changed since training are skipped and counted in `heldout_skipped`)."""
    from server.registry import open_registry

    adapter_dir = Path(adapter_dir)
    settings = settings or load_settings()
    split = read_heldout(adapter_dir, settings)
    fields = held_out_traces(adapter_dir, settings, progress=progress, batch_size=batch_size, split=split)
    result: dict[str, Any] = {
        "temperatures": {},
        "ece_before": {},
        "ece_after": {},
        "accuracy": {},
        "n": len(split.examples),
    }
    if split.skipped:
        result["heldout_skipped"] = {"missing": len(split.missing), "changed": len(split.changed)}
    for name, evidence in fields.items():
        t, before, after = fit_temperature(evidence.traces, evidence.correct)
        result["temperatures"][name] = round(t, 4)
        result["ece_before"][name] = round(before, 4)
        result["ece_after"][name] = round(after, 4)
        result["accuracy"][name] = round(sum(evidence.correct) / len(evidence.correct), 4)
    result["method"] = (
        "temperature scaling per field; log-loss of correctness on the held-out split; grid T in [0.14, 20]"
    )
    result["fitted_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    # Under the registry lock: `triage eval` may be recording an eval in the same manifest.
    open_registry(settings.model).update_manifest(adapter_dir, lambda m: m.__setitem__("calibration", result))
    return result
