"""Reading the Prometheus text format back into numbers, for the metric tests."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, frozenset[tuple[str, str]]]


class Samples:
    """Every sample of one scrape: `s.get("triage_routes_total", route="local")` sums the samples of that name
    whose labels include the given ones (0.0 when there is none)."""

    def __init__(self, text: str) -> None:
        self.values: dict[Key, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.values[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def get(self, name: str, **labels: str) -> float:
        want = set(labels.items())
        return sum(v for (n, ls), v in self.values.items() if n == name and want <= ls)

    def has(self, name: str, **labels: str) -> bool:
        want = set(labels.items())
        return any(n == name and want <= ls for (n, ls) in self.values)

    def labels_of(self, name: str) -> list[Mapping[str, str]]:
        return [dict(ls) for (n, ls) in self.values if n == name]

    def names(self) -> set[str]:
        return {n for n, _ in self.values}


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return after.get(name, **labels) - before.get(name, **labels)
