"""Fit a label head (server.heads.head) for a served model: the adapter's own hidden states plus TF-IDF.

Per label field, on the training split:
  - a logistic regression on the standardised pooled hidden states (the served prefill's, extracted by
    `BatchRunner.features`, so training and serving read the same numbers);
  - a logistic regression on the TF-IDF n-grams (the classical baseline's features).
On the held-out split, per field: the weight w of the text model (grid, by held-out log-loss) and then a
temperature T (by held-out log-loss). Balanced class weights keep thin classes (Urgent, Sales,
positive) from being drowned. The held-out tickets are never used to fit the two models.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finetune.config import FinetuneConfig, HeadArgs
from finetune.copy_scorer import fit_copy_scorer
from finetune.data import Example
from finetune.features import CACHE_LAYERS, CACHE_POOLS, extract, select_pools
from finetune.manifest import head_manifest, write_json
from server.config import Settings
from server.evaluation.metrics import expected_calibration_error
from server.heads.head import FieldHead, LabelHead
from server.heads.text import make_vectorizer, ticket_text
from server.registry import resolve_project_path
from server.results import label_of
from server.taxonomy import Taxonomy

if TYPE_CHECKING:
    from server.engines.embedded.runner import BatchRunner

# Re-exported: the sweep and the tests import them from here.
__all__ = ["CACHE_LAYERS", "CACHE_POOLS", "add_head", "extract", "fit_copy_scorer", "fit_head", "select_pools"]

log = logging.getLogger(__name__)
T_GRID = [math.exp(x / 40) for x in range(-80, 121)]  # 0.14 .. 20


def gold(examples: Sequence[Example], taxonomy: Taxonomy, name: str) -> np.ndarray:
    taxonomy.field(name)  # an unknown field is a caller's bug: raise rather than answer None
    return np.array([label_of(ex.answer, name) for ex in examples])


def _multiclass(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) with one row per class; sklearn keeps a single row for two classes (the second's logit)."""
    w, b = np.asarray(model.coef_), np.asarray(model.intercept_)
    if w.shape[0] == 1 and len(model.classes_) == 2:
        w, b = np.vstack([np.zeros_like(w), w]), np.concatenate([[0.0], b])
    return w, b


def _nll(probs: np.ndarray, y_idx: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y_idx)), y_idx], 1e-12, 1.0))))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


def fit_head(
    name: str,
    taxonomy: Taxonomy,
    train: Sequence[Example],
    held: Sequence[Example],
    train_features: np.ndarray,
    held_features: np.ndarray,
    cfg: HeadArgs,
) -> tuple[LabelHead, dict[str, Any]]:
    """The head and a report (per field: w, T, held-out accuracy of each part and of the head, ECE)."""
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    mean = train_features.mean(axis=0)
    scale = train_features.std(axis=0) + 1e-6
    h_train, h_held = (train_features - mean) / scale, (held_features - mean) / scale
    vectorizer = None
    x_train = x_held = None
    if cfg.text:
        vectorizer = make_vectorizer()
        x_train = vectorizer.fit_transform([ticket_text(ex.ticket) for ex in train])
        x_held = vectorizer.transform([ticket_text(ex.ticket) for ex in held])
    fields: dict[str, FieldHead] = {}
    report: dict[str, Any] = {
        "fields": {},
        "train_rows": len(train),
        "heldout_rows": len(held),
        "pools": [[p.layer, p.how] for p in cfg.pool_list],
    }
    for spec in taxonomy.label_fields:
        y_train, y_held = gold(train, taxonomy, spec.name), gold(held, taxonomy, spec.name)
        hidden = LogisticRegression(C=cfg.hidden_c, class_weight="balanced", max_iter=5000).fit(h_train, y_train)
        labels = [str(c) for c in hidden.classes_]
        missing = [lab for lab in spec.labels if lab not in labels]
        if missing:  # the head can only answer labels it has seen; say so rather than fail a refit
            log.warning("head %s: no training row for %s; the head never predicts them", spec.name, missing)
        text_w = text_b = None
        if cfg.text:
            text = LogisticRegression(C=cfg.text_c, class_weight="balanced", max_iter=5000).fit(x_train, y_train)
            assert list(text.classes_) == list(hidden.classes_)
            text_w, text_b = _multiclass(text)
        fh = FieldHead(labels, *_multiclass(hidden), text_w, text_b, text_weight=0.0)
        known = np.isin(y_held, labels)
        y_idx = np.array([labels.index(v) for v in y_held[known]])
        rep: dict[str, Any] = {"labels": labels, "labels_without_training_rows": missing}
        # w by held-out log-loss (each w at its own best temperature), then T for the chosen w.
        best = (float("inf"), 0.0, 1.0)
        for w in cfg.text_weights if cfg.text else [0.0]:
            fh.text_weight = w
            z = fh.logits(h_held[known], x_held[known] if x_held is not None else None)
            nll, t = min((_nll(_softmax(z / t), y_idx), t) for t in T_GRID)
            acc = float(np.mean(z.argmax(axis=1) == y_idx))
            rep[f"heldout_accuracy_w{w:g}"] = round(acc, 4)
            rep[f"heldout_nll_w{w:g}"] = round(nll, 4)
            if nll < best[0]:
                best = (nll, w, t)
        _, fh.text_weight, fh.temperature = best
        probs = fh.probs(h_held[known], x_held[known] if x_held is not None else None)
        correct = probs.argmax(axis=1) == y_idx
        raw = _softmax(fh.logits(h_held[known], x_held[known] if x_held is not None else None))
        rep.update(
            text_weight=fh.text_weight,
            temperature=round(fh.temperature, 4),
            heldout_accuracy=round(float(np.mean(correct)), 4),
            heldout_ece_before=round(
                expected_calibration_error(raw.max(axis=1).tolist(), (raw.argmax(axis=1) == y_idx).tolist()), 4
            ),
            heldout_ece_after=round(expected_calibration_error(probs.max(axis=1).tolist(), correct.tolist()), 4),
        )
        report["fields"][spec.name] = rep
        fields[spec.name] = fh
        log.info(
            "head %s: w_text=%.2f T=%.3f held-out accuracy %.3f",
            spec.name,
            fh.text_weight,
            fh.temperature,
            rep["heldout_accuracy"],
        )
    report["seconds"] = round(time.perf_counter() - started, 1)
    head = LabelHead(
        name,
        list(cfg.pool_list),
        mean,
        scale,
        fields,
        vectorizer,
        {"fit": {k: v for k, v in report.items() if k != "fields"}},
    )
    return head, report


def add_head(
    adapter_dir: str | Path,
    cfg: FinetuneConfig,
    settings: Settings,
    taxonomy: Taxonomy,
    train: Sequence[Example],
    held: Sequence[Example],
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Extract features with the adapter as served, fit the head, write its files and record it in the
    manifest (its files join `adapter_files`, so the registry validates them on promotion)."""
    from server.engines import open_batch_runner
    from server.registry import (
        AdapterEntry,
        AdapterManifest,
        open_registry,
        read_manifest,
        sha256_file,
        utc_now,
    )

    adapter_dir = Path(adapter_dir)
    if not held:
        raise ValueError("a label head needs a held-out split (its weights and temperatures are fitted there)")
    manifest = read_manifest(adapter_dir).to_json()
    bare = {k: v for k, v in manifest.items() if k not in ("head", "out_of_scope_threshold")}
    for f in (
        "head.json",
        "head.safetensors",
        "head_vocabulary.json",
        "copy_head.json",
    ):  # features come from the model alone
        (adapter_dir / f).unlink(missing_ok=True)
    entry = AdapterEntry(
        manifest.get("name", adapter_dir.name), adapter_dir, AdapterManifest.parse(bare, adapter_dir / "manifest.json")
    )
    runner = open_batch_runner(settings, taxonomy, adapter=entry)
    pools = cfg.head.pool_list
    t0 = time.perf_counter()
    f_train = extract(runner, train, pools, progress, "features (train)")
    f_held = extract(runner, held, pools, progress, "features (held-out)")
    seconds = time.perf_counter() - t0
    head, report = fit_head(manifest.get("name", adapter_dir.name), taxonomy, train, held, f_train, f_held, cfg.head)
    report["feature_seconds"] = round(seconds, 1)
    report["features_per_s"] = round((len(train) + len(held)) / seconds, 2) if seconds else None
    report["dtype"] = str(runner.dtype).removeprefix("torch.")
    threshold = None
    if taxonomy.out_of_scope is not None and cfg.head.oos_data:
        threshold, report["out_of_scope"] = fit_oos_threshold(runner, head, taxonomy, cfg, progress)
    files = head.save(adapter_dir)
    report["fitted_at"] = utc_now()
    copy = fit_copy_scorer(taxonomy, train, held)
    if copy is not None:
        files.append(copy[0].save(adapter_dir, copy[1]))

    def update(m: dict[str, Any]) -> None:
        m["head"] = report
        if copy is not None:
            m["copy_head"] = copy[1]
        else:
            m.pop("copy_head", None)
            m.get("adapter_files", {}).pop("copy_head.json", None)
        m.setdefault("adapter_files", {}).update({f: sha256_file(adapter_dir / f) for f in files})
        if threshold is not None:
            m["out_of_scope_threshold"] = threshold

    open_registry(settings.model).update_manifest(adapter_dir, update)
    return report


def fit_oos_threshold(
    runner: BatchRunner, head: LabelHead, taxonomy: Taxonomy, cfg: FinetuneConfig, progress: bool
) -> tuple[float, dict[str, Any]]:
    """The confidence threshold under which an answer becomes out of scope: on a validation file with
    in-scope and out-of-scope rows, the highest out-of-scope recall whose in-scope accuracy stays at or
    above the wanted level (else the threshold with the best in-scope accuracy)."""
    from server.evaluation.data import read_labelled_csv, row_ticket

    oos = taxonomy.out_of_scope
    assert oos is not None and cfg.head.oos_data is not None
    rows = read_labelled_csv(resolve_project_path(cfg.head.oos_data), taxonomy)
    tickets = [row_ticket(r) for r in rows]
    feats = np.concatenate([runner.features(tickets[i : i + 64], head.pools) for i in range(0, len(tickets), 64)])
    answers = head.predict(feats, tickets)
    gold = [r[oos.field].strip() for r in rows]
    pred = [a[oos.field][0] for a in answers]
    conf = np.array([a[oos.field][1] for a in answers])
    inside = np.array([g != oos.label for g in gold])
    right = np.array([p == g for p, g in zip(pred, gold)])
    curve = []
    for t in sorted(set(np.round(conf, 4).tolist()) | {0.0}):
        answered = conf >= t
        in_acc = float(np.mean(right[inside] & answered[inside])) if inside.any() else 0.0
        oos_rec = float(np.mean(~answered[~inside])) if (~inside).any() else 0.0
        curve.append((t, in_acc, oos_rec))
    ok = [c for c in curve if c[1] >= cfg.head.oos_min_in_scope_accuracy]
    t, in_acc, oos_rec = max(ok, key=lambda c: (c[2], c[1])) if ok else max(curve, key=lambda c: c[1])
    report = {
        "data": cfg.head.oos_data,
        "threshold": t,
        "in_scope_accuracy": round(in_acc, 4),
        "oos_recall": round(oos_rec, 4),
        "wanted_in_scope_accuracy": cfg.head.oos_min_in_scope_accuracy,
        "met": bool(ok),
        "n_in_scope": int(inside.sum()),
        "n_out_of_scope": int((~inside).sum()),
    }
    log.info(
        "out-of-scope threshold %.4f: in-scope accuracy %.3f, out-of-scope recall %.3f (validation)", t, in_acc, oos_rec
    )
    return float(t), report


def head_only(
    cfg: FinetuneConfig,
    settings: Settings,
    taxonomy: Taxonomy,
    out_dir: Path,
    train: Sequence[Example],
    held: Sequence[Example],
    provenance: dict[str, Any],
    base: str,
    *,
    progress: bool = True,
) -> Path:
    """A head over the bare base model: a folder with a manifest (kind "head") and the head files."""
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    write_json(
        out_dir / "manifest.json", head_manifest(cfg, base=base, taxonomy_key=taxonomy.key, provenance=provenance)
    )
    local = resolve_project_path(base)
    served = settings.variant(model={"base": str(local) if local.exists() else base})
    add_head(out_dir, cfg, served, taxonomy, train, held, progress=progress)
    return out_dir
