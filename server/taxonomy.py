"""A taxonomy is data: which label fields exist, their allowed values and definitions.

The default (`tickets`) is the project's labelling guideline; Banking77's 77 intents or any other
scheme is another YAML file with the same shape, not a code change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from server.resources import builtin_taxonomies_dir

BUILTIN_DIR = builtin_taxonomies_dir()


class TaxonomyError(ValueError):
    pass


@dataclass(frozen=True, eq=False)
class FieldSpec:
    """One output field. `values` set = a closed label set (confidence is computed); empty = free text."""

    name: str
    description: str = ""
    values: dict[str, str] = field(default_factory=dict)  # label -> definition, in prompt order
    in_extracted_info: bool = False
    # Free text that must be copied from the ticket: null or one of the ticket's candidate spans
    # (server.extraction), decided per ticket by the decoder; never invented text.
    copy_only: bool = False

    @property
    def is_label(self) -> bool:
        return bool(self.values)

    @property
    def labels(self) -> list[str]:
        return list(self.values)


@dataclass(frozen=True)
class OutOfScope:
    """Answers of `field` whose confidence is under `threshold` become `label`: the ticket fits no label.
    The model never chooses `label` itself; an adapter's manifest may carry a threshold fitted for it."""

    field: str
    label: str
    threshold: float


@dataclass(frozen=True, eq=False)
class Taxonomy:
    name: str
    version: str
    labels: tuple[FieldSpec, ...]
    extracted_info: tuple[FieldSpec, ...] = ()
    reasoning: bool = True
    source: str = ""
    out_of_scope: OutOfScope | None = None

    def out_of_scope_label(self, field_name: str) -> str | None:
        oos = self.out_of_scope
        return oos.label if oos is not None and oos.field == field_name else None

    @property
    def label_fields(self) -> list[FieldSpec]:
        """Every closed-set field (top level and inside extracted_info): these carry a confidence."""
        return [f for f in (*self.labels, *self.extracted_info) if f.is_label]

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def field(self, name: str) -> FieldSpec:
        for f in (*self.labels, *self.extracted_info):
            if f.name == name:
                return f
        raise KeyError(name)

    def validate_label(self, name: str, value: str) -> None:
        spec = self.field(name)
        if spec.is_label and value not in spec.values:
            raise TaxonomyError(f"{value!r} is not a {name} of taxonomy {self.key}; allowed: {', '.join(spec.labels)}")


def _field(name: str, raw: object, nested: bool, where: str) -> FieldSpec:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise TaxonomyError(f"{where}: field {name!r} must be a mapping")
    values = raw.get("values") or {}
    if isinstance(values, list):
        values = {str(v): "" for v in values}
    if not isinstance(values, dict):
        raise TaxonomyError(f"{where}: {name}.values must be a list or a mapping")
    values = {str(k): str(v or "") for k, v in values.items()}
    for label in values:
        if not label or '"' in label or "\\" in label or label != label.strip():
            raise TaxonomyError(
                f"{where}: label {label!r} of {name} must be non-empty, trimmed, without quotes or backslashes"
            )
    copy_only = raw.get("copy_only", False)
    if not isinstance(copy_only, bool) or (copy_only and values):
        raise TaxonomyError(f"{where}: {name}.copy_only must be true or false, and only on a text field")
    return FieldSpec(
        name=name,
        description=str(raw.get("description", "")),
        values=values,
        in_extracted_info=nested,
        copy_only=copy_only,
    )


def parse_taxonomy(data: dict[str, Any], source: str = "<memory>") -> Taxonomy:
    if not isinstance(data, dict) or "name" not in data:
        raise TaxonomyError(f"{source}: a taxonomy needs at least 'name' and 'labels'")
    labels = tuple(_field(n, raw, False, source) for n, raw in (data.get("labels") or {}).items())
    if not labels or not all(f.is_label for f in labels):
        raise TaxonomyError(f"{source}: 'labels' needs at least one field, each with values")
    extracted = tuple(_field(n, raw, True, source) for n, raw in (data.get("extracted_info") or {}).items())
    names = [f.name for f in (*labels, *extracted)]
    if len(set(names)) != len(names) or "reasoning" in names:
        raise TaxonomyError(f"{source}: field names must be unique and not 'reasoning'")
    return Taxonomy(
        out_of_scope=_out_of_scope(data.get("out_of_scope"), (*labels, *extracted), source),
        name=str(data["name"]),
        version=str(data.get("version", "1")),
        labels=labels,
        extracted_info=extracted,
        reasoning=bool(data.get("reasoning", True)),
        source=source,
    )


def _out_of_scope(raw: object, fields: tuple[FieldSpec, ...], source: str) -> OutOfScope | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"field", "label", "threshold"} or "label" not in raw:
        raise TaxonomyError(f"{source}: out_of_scope needs 'label' (and optionally 'field', 'threshold'), nothing else")
    name = str(raw.get("field", fields[0].name))
    spec = next((f for f in fields if f.name == name and f.is_label), None)
    if spec is None:
        raise TaxonomyError(f"{source}: out_of_scope.field {name!r} is not a label field")
    label, threshold = str(raw["label"]), raw.get("threshold", 0.5)
    if label in spec.values:
        raise TaxonomyError(
            f"{source}: out_of_scope.label {label!r} must not be one of {name}'s labels (the model never picks it)"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise TaxonomyError(f"{source}: out_of_scope.threshold must be a number in [0, 1]")
    return OutOfScope(name, label, float(threshold))


def load_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """A built-in name (`tickets`) or a path to a YAML file (a file may also hold other settings under `taxonomy:`)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = BUILTIN_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise TaxonomyError(f"taxonomy not found: {name_or_path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("taxonomy"), dict):
        data = data["taxonomy"]
    return parse_taxonomy(data, source=str(path))
