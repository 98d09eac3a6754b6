"""Typed records over committed JSON: `EvalSummary` (what `server.evaluation.run` returns, the gate judges
and adapter manifests keep under `evals`) and `JsonRecord`, the base of these and of the registry's
`AdapterManifest`. A leaf module (pydantic only): the registry and the evaluation both build on it, and
the evaluation imports the registry, so it cannot live in either.

The files are committed to git and read by older code, so a record must write back exactly the keys it
read, in the order it read them: fields it never received stay out of the dump (`exclude_unset`), keys
it does not declare are kept as extras, and new keys go last, as they would in a dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic import ValidationError as ValidationError  # re-exported: callers catch it with the records

# A JSON number that must stay the type it was written as: a float field would turn a stored 1 into 1.0.
Number = int | float


class JsonRecord(BaseModel):
    """A JSON object with some typed keys; round-trips its keys and their order unchanged."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    _order: list[str] = PrivateAttr(default_factory=list)

    def model_post_init(self, context: Any) -> None:
        # Only the keys that were given (declared ones first in pydantic's own order otherwise).
        declared = [k for k in type(self).model_fields if k in self.model_fields_set]
        self._order = declared + list(self.model_extra or {})

    @model_validator(mode="wrap")
    @classmethod
    def _remember_order(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        record = handler(data)
        if isinstance(data, Mapping):  # the file's order, declared and extra keys interleaved (nested too)
            record._order = list(data)
        return record

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls.model_validate(dict(data))

    @classmethod
    def coerce(cls, data: Self | Mapping[str, Any]) -> Self:
        if isinstance(data, cls):
            return data
        assert not isinstance(data, JsonRecord), f"a {type(data).__name__} is not a {cls.__name__}"
        return cls.from_json(data)

    @model_serializer(mode="wrap")
    def _in_read_order(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        rank = {k: i for i, k in enumerate(self._order)}
        return dict(sorted(data.items(), key=lambda kv: rank.get(kv[0], len(rank))))

    def to_json(self) -> dict[str, Any]:
        """The JSON object: the keys read plus the keys set since, nothing pydantic defaulted."""
        return self.model_dump(mode="json", exclude_unset=True)

    def set(self, key: str, value: Any) -> None:
        """Set a key that may or may not be declared, remembering it for the dump order."""
        setattr(self, key, value)
        if key not in self._order:
            self._order.append(key)

    # Read access by JSON key, for callers that still treat the record as the dict it used to be.
    def get(self, key: str, default: Any = None) -> Any:
        data = self.to_json_shallow()
        return data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        data = self.to_json_shallow()
        if key not in data:
            raise KeyError(key)
        return data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_json_shallow()

    def keys(self) -> Iterable[str]:
        return self.to_json_shallow().keys()

    def items(self) -> Iterable[tuple[str, Any]]:
        return self.to_json_shallow().items()

    def to_json_shallow(self) -> dict[str, Any]:
        """Top-level keys with their values as held (nested records stay records)."""
        data = {k: getattr(self, k) for k in type(self).model_fields if k in self.model_fields_set}
        data.update(self.model_extra or {})
        rank = {k: i for i, k in enumerate(self._order)}
        return dict(sorted(data.items(), key=lambda kv: rank.get(kv[0], len(rank))))


# Per-label metrics of one field: {label: {precision, recall, f1, support}}.
LabelMetrics = dict[str, dict[str, Any]]


class EvalSummary(JsonRecord):
    """One predictor on one data set. Metrics per label field are the extra keys `<field>_accuracy`,
    `<field>_macro_f1`, `<field>_ece` (and `<field>_exact_match`... for extracted text): their set
    depends on the taxonomy, so they are read with `metric()` rather than declared."""

    data: str | None = None
    taxonomy: str | None = None
    model: dict[str, Any] | None = None  # {"base", "adapter", "adapter_name"} or the classical recipe
    prompt_version: str | None = None
    head: str | None = None
    data_sha256: str | None = None
    n: int | None = None
    invalid_json: int | None = None
    per_label: dict[str, LabelMetrics] | None = None  # {field: {label: metrics}}
    per_language: dict[str, dict[str, dict[str, Any]]] | None = None  # {field: {language: {n, accuracy}}}
    tickets_per_s: Number | None = None
    seconds: Number | None = None
    evaluated_at: str | None = None  # set when a manifest stores it

    def metric(self, key: str) -> float | None:
        """A numeric metric by its JSON key (`category_accuracy`); None when absent or not a number."""
        value = self.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def accuracy_fields(self) -> list[str]:
        """Fields with an `<field>_accuracy` key, in key order (`in_scope_accuracy` is not a field)."""
        return [
            k.removesuffix("_accuracy") for k in self.keys() if k.endswith("_accuracy") and k != "in_scope_accuracy"
        ]

    def labels_of(self, field_name: str) -> LabelMetrics | None:
        """Per-label metrics of one field, from `per_label` or a report.json's `fields` block."""
        found = (self.per_label or {}).get(field_name)
        if found is None:
            fields = self.get("fields")
            found = ((fields if isinstance(fields, dict) else {}).get(field_name) or {}).get("per_label")
        return found if isinstance(found, dict) else None

    def headline(self, suffixes: tuple[str, ...]) -> dict[str, Any]:
        """The keys ending in one of `suffixes` (`_accuracy`, ...): the summary's short form."""
        return {k: v for k, v in self.items() if k.endswith(suffixes)}


# A summary as the gate and the comparison take it: the record, or the JSON object of one (a report.json).
SummaryLike = EvalSummary | Mapping[str, Any]
