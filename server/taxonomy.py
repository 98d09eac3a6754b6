"""A taxonomy is data: which label fields exist, their allowed values and definitions.

The default (`tickets`) is the project's labelling guideline; Banking77's 77 intents or any other
scheme is another YAML file with the same shape, not a code change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

BUILTIN_DIR = Path(__file__).resolve().parent / "taxonomies"


class TaxonomyError(ValueError):
    pass


@dataclass(frozen=True, eq=False)
class FieldSpec:
    """One output field. `values` set = a closed label set (confidence is computed); empty = free text."""

    name: str
    description: str = ""
    values: dict[str, str] = field(default_factory=dict)  # label -> definition, in prompt order
    in_extracted_info: bool = False

    @property
    def is_label(self) -> bool:
        return bool(self.values)

    @property
    def labels(self) -> list[str]:
        return list(self.values)


@dataclass(frozen=True, eq=False)
class Taxonomy:
    name: str
    version: str
    labels: tuple[FieldSpec, ...]
    extracted_info: tuple[FieldSpec, ...] = ()
    reasoning: bool = True
    source: str = ""

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
            raise TaxonomyError(f"{where}: label {label!r} of {name} must be non-empty, trimmed, without quotes or backslashes")
    return FieldSpec(name=name, description=str(raw.get("description", "")), values=values, in_extracted_info=nested)


def parse_taxonomy(data: dict, source: str = "<memory>") -> Taxonomy:
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
        name=str(data["name"]),
        version=str(data.get("version", "1")),
        labels=labels,
        extracted_info=extracted,
        reasoning=bool(data.get("reasoning", True)),
        source=source,
    )


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
