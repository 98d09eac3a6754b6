"""A label head: per label field, a calibrated combination of two linear models over one ticket,

    z = w * log p_text(x_text) + (1 - w) * log p_hidden(x_hidden);   p = softmax(z / T)

`p_hidden` reads the served model's own hidden states, pooled over the ticket's prefill (layers and
poolings in `pools`), standardised; `p_text` reads the TF-IDF n-grams of server.heads.text. The weight w
and the temperature T are fitted on held-out predictions (finetune.heads). The engine decodes the
JSON with the head's labels forced in and the head's probability as the label's confidence; free text
(product, error code, reasoning) is still written by the language model, after the labels.

Files beside the adapter (flat, so the registry checksums them with the LoRA files): `head.json`
(pools, fields, labels, w, T), `head.safetensors` (arrays), `head_vocabulary.json` (n-gram vocabularies).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from server.heads.text import ticket_text, vectorizer_from_state, vectorizer_state
from server.prompts import TicketInput
from server.registry import HEAD_FILES

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Pool:
    layer: int  # index into the model's hidden_states (0 = embeddings, n_layers = after the final norm)
    # mean: over the ticket's tokens; last: the last token (where the answer starts); history: mean over
    # the previous interactions and what follows them (zeros for a ticket without history).
    how: Literal["mean", "last", "history"]


POOL_KINDS = ("mean", "last", "history")


def pool_features(hidden_states: Sequence[Any], pools: Sequence[Pool], history_start: int | None = None) -> np.ndarray:
    """One ticket's feature vector from a prefill's hidden states (each `(1, T, d)`, T = the ticket's own
    tokens: the shared prompt prefix is cached and not part of them)."""
    import torch

    parts = []
    for p in pools:
        h = hidden_states[p.layer][0].float()
        if p.how == "mean":
            parts.append(h.mean(dim=0))
        elif p.how == "last":
            parts.append(h[-1])
        else:
            parts.append(
                h[history_start:].mean(dim=0)
                if history_start is not None and history_start < h.shape[0]
                else torch.zeros_like(h[-1])
            )
    features: np.ndarray = torch.cat(parts).cpu().numpy().astype(np.float32)
    return features


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    out: np.ndarray = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return out


@dataclass
class FieldHead:
    labels: list[str]
    hidden_w: np.ndarray  # (n_labels, d)
    hidden_b: np.ndarray  # (n_labels,)
    text_w: np.ndarray | None  # (n_labels, vocabulary)
    text_b: np.ndarray | None
    text_weight: float  # w; 0 = hidden states only
    temperature: float = 1.0

    def logits(self, hidden: np.ndarray, text: Any | None) -> np.ndarray:
        """Combined log-probabilities before the temperature, (n, n_labels)."""
        z = (1.0 - self.text_weight) * _log_softmax(hidden @ self.hidden_w.T + self.hidden_b)
        if self.text_weight > 0:
            assert self.text_w is not None and self.text_b is not None and text is not None
            z = z + self.text_weight * _log_softmax(np.asarray(text @ self.text_w.T) + self.text_b)
        return z

    def probs(self, hidden: np.ndarray, text: Any | None) -> np.ndarray:
        probs: np.ndarray = np.exp(_log_softmax(self.logits(hidden, text) / self.temperature))
        return probs


class LabelHead:
    def __init__(
        self,
        name: str,
        pools: list[Pool],
        mean: np.ndarray,
        scale: np.ndarray,
        fields: dict[str, FieldHead],
        vectorizer: Any | None,
        info: dict[str, Any] | None = None,
    ):
        self.name = name
        self.pools = pools
        self.mean, self.scale = mean, scale
        self.fields = fields
        self.vectorizer = vectorizer
        self.info = info or {}

    @property
    def layers_needed(self) -> bool:
        return bool(self.pools)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        standard: np.ndarray = (features - self.mean) / self.scale
        return standard

    def text_features(self, tickets: Sequence[TicketInput]) -> Any | None:
        if self.vectorizer is None or not any(f.text_weight > 0 for f in self.fields.values()):
            return None
        return self.vectorizer.transform([ticket_text(t) for t in tickets])

    def predict(self, features: np.ndarray, tickets: Sequence[TicketInput]) -> list[dict[str, tuple[str, float]]]:
        """Per ticket: field -> (label, calibrated probability)."""
        hidden = self.standardise(np.atleast_2d(features))
        text = self.text_features(tickets)
        out: list[dict[str, tuple[str, float]]] = [{} for _ in range(hidden.shape[0])]
        for name, fh in self.fields.items():
            p = fh.probs(hidden, text)
            for i, row in enumerate(p):
                k = int(row.argmax())
                out[i][name] = (fh.labels[k], float(row[k]))
        return out

    # -- files --------------------------------------------------------------------------------
    def save(self, folder: Path) -> list[str]:
        from safetensors.numpy import save_file

        folder = Path(folder)
        arrays: dict[str, np.ndarray] = {
            "hidden.mean": self.mean.astype(np.float32),
            "hidden.scale": self.scale.astype(np.float32),
        }
        meta: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "name": self.name,
            "pools": [[p.layer, p.how] for p in self.pools],
            "fields": {},
            "info": self.info,
        }
        for name, fh in self.fields.items():
            meta["fields"][name] = {"labels": fh.labels, "text_weight": fh.text_weight, "temperature": fh.temperature}
            arrays[f"{name}.hidden.w"] = fh.hidden_w.astype(np.float32)
            arrays[f"{name}.hidden.b"] = fh.hidden_b.astype(np.float32)
            if fh.text_w is not None and fh.text_weight > 0:
                # fp16 halves the committed file; the weights are small and the rounding is far below the fit's noise.
                arrays[f"{name}.text.w"] = fh.text_w.astype(np.float16)
                arrays[f"{name}.text.b"] = fh.text_b.astype(np.float32)  # type: ignore[union-attr]
        vocab: dict[str, Any] = {}
        if self.vectorizer is not None and any(f.text_weight > 0 for f in self.fields.values()):
            vocab, text_arrays = vectorizer_state(self.vectorizer)
            arrays.update(text_arrays)
        (folder / "head.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (folder / "head_vocabulary.json").write_text(
            json.dumps(vocab, ensure_ascii=False, separators=(",", ":")), encoding="utf-8"
        )
        # safetensors writes the raw buffer: a Fortran-ordered array (sklearn's coef_ can be) would be scrambled.
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(folder / "head.safetensors"))
        return list(HEAD_FILES)

    @classmethod
    def load(cls, folder: Path) -> LabelHead:
        from safetensors.numpy import load_file

        folder = Path(folder)
        meta = json.loads((folder / "head.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{folder / 'head.json'}: unsupported head format {meta.get('format')!r}")
        arrays = load_file(str(folder / "head.safetensors"))
        vocab = json.loads((folder / "head_vocabulary.json").read_text(encoding="utf-8"))
        fields = {}
        for name, f in meta["fields"].items():
            has_text = f"{name}.text.w" in arrays
            fields[name] = FieldHead(
                labels=list(f["labels"]),
                hidden_w=arrays[f"{name}.hidden.w"].astype(np.float32),
                hidden_b=arrays[f"{name}.hidden.b"].astype(np.float32),
                text_w=arrays[f"{name}.text.w"].astype(np.float32) if has_text else None,
                text_b=arrays[f"{name}.text.b"].astype(np.float32) if has_text else None,
                text_weight=float(f["text_weight"]) if has_text else 0.0,
                temperature=float(f.get("temperature", 1.0)),
            )
        vectorizer = vectorizer_from_state(vocab, arrays) if vocab else None
        pools = [Pool(int(layer), how) for layer, how in meta["pools"]]
        return cls(
            meta.get("name", folder.name),
            pools,
            arrays["hidden.mean"],
            arrays["hidden.scale"],
            fields,
            vectorizer,
            meta.get("info"),
        )


def has_head(folder: Path | None) -> bool:
    return folder is not None and (Path(folder) / "head.json").is_file()
