"""The engine rule table, the backup order, the language detector and the cost meter (no engines run)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from server.config import RouteRule, load_settings
from server.engines.base import ModelInfo
from server.prompts import TicketInput
from server.routing import EngineMeter, ProfileRules, answered_by_label, detect_language, rule_matches
from tests.routing.doubles import ScriptedEngine

SAMPLES = {
    "en": "Hi, I was charged twice for my subscription this month and I would like a refund for one of them.",
    "de": "Hallo, ich wurde diesen Monat zweimal für mein Abo belastet und möchte bitte eine Erstattung.",
    "es": "Hola, me han cobrado dos veces la suscripción este mes y quisiera el reembolso de uno de los cargos.",
    "fr": "Bonjour, j'ai été débité deux fois pour mon abonnement ce mois-ci et je voudrais un remboursement.",
    "pt": "Olá, fui cobrado duas vezes pela minha assinatura este mês e gostaria de um reembolso, por favor.",
}


@pytest.mark.parametrize("lang", sorted(SAMPLES))
def test_detects_each_language(lang):
    assert detect_language(SAMPLES[lang]) == lang


@pytest.mark.parametrize("text", ["", "ERR-504 0x80070005", "Refund", "12345 !!!", "ProBook 450 G8"])
def test_too_little_evidence_is_unknown(text):
    assert detect_language(text) == "unknown"


def test_rule_conditions():
    rule = RouteRule(max_chars=100, min_chars=10, languages=["en", "de"], engine="small")
    assert rule_matches(rule, "en", 50)
    assert not rule_matches(rule, "fr", 50)
    assert not rule_matches(rule, "en", 101)
    assert not rule_matches(rule, "en", 5)
    assert rule_matches(RouteRule(), "unknown", 10**6)  # no conditions: catch-all


def rules_for(**routing) -> ProfileRules:
    settings = load_settings(database_url="sqlite://", routing=routing)
    engines = {"default": ScriptedEngine("d"), **{name: ScriptedEngine(name) for name in settings.routing.engines}}
    return ProfileRules(settings.routing, engines)


def test_first_matching_rule_wins_and_counts_history():
    rules = rules_for(
        rules=[
            {"max_chars": 120, "languages": ["en"], "engine": "small"},
            {"languages": ["de", "unknown"], "engine": "big"},
            {"engine": "default"},
        ],
        engines={"small": {}, "big": {}},
    )
    assert rules.choose(TicketInput("Refund", SAMPLES["en"])).profile == "small"
    long_en = TicketInput("Refund", SAMPLES["en"], ("earlier message " * 5,))
    assert rules.choose(long_en).profile == "default"  # history counts towards the length
    choice = rules.choose(TicketInput("Abo", SAMPLES["de"]))
    assert (choice.profile, choice.rule, choice.language) == ("big", 1, "de")
    assert rules.choose(TicketInput("x", "ERR-504")).profile == "big"  # unknown language
    assert rules.choose(TicketInput("x", SAMPLES["fr"] * 3)).profile == "default"


def test_default_config_is_one_catch_all_rule():
    settings = load_settings(database_url="sqlite://")
    assert [r.engine for r in settings.routing.rules] == ["default"] and settings.routing.engines == {}
    rules = rules_for()
    assert rules.choose(TicketInput("s", SAMPLES["pt"])).profile == "default"
    assert rules.candidates("default") == ["default"]


def test_no_rule_matching_falls_back_to_default():
    rules = rules_for(rules=[{"languages": ["fr"], "engine": "small"}], engines={"small": {}})
    choice = rules.choose(TicketInput("s", SAMPLES["en"]))
    assert (choice.profile, choice.rule) == ("default", None)


def test_backup_order():
    rules = rules_for(rules=[{"engine": "gpu"}], engines={"gpu": {}}, backup="default")
    assert rules.candidates("gpu") == ["gpu", "default"]
    assert rules.candidates("default") == ["default"]  # the backup is not asked twice


@pytest.mark.parametrize(
    "routing, needle",
    [
        ({"rules": [{"engine": "ghost"}]}, "ghost"),
        ({"backup": "ghost"}, "ghost"),
        ({"engines": {"default": {}}}, "default"),
        ({"rules": [{"languages": ["xx"]}]}, "languages"),
        ({"rules": [{"engine": "default", "max_len": 3}]}, "max_len"),
    ],
)
def test_bad_rule_tables_are_refused(routing, needle):
    with pytest.raises(ValidationError, match=needle):
        load_settings(database_url="sqlite://", routing=routing)


def test_rule_table_from_env(monkeypatch):
    monkeypatch.setenv(
        "TRIAGE_ROUTING__RULES", '[{"max_chars": 600, "languages": ["en"], "engine": "small"}, {"engine": "default"}]'
    )
    monkeypatch.setenv("TRIAGE_ROUTING__ENGINES", '{"small": {"adapter": "tickets-smollm2-v1"}}')
    monkeypatch.setenv("TRIAGE_ROUTING__BACKUP", "default")
    s = load_settings(database_url="sqlite://")
    assert s.routing.rules[0].engine == "small" and s.routing.rules[0].languages == ["en"]
    assert s.routing.engines["small"].adapter == "tickets-smollm2-v1" and s.routing.backup == "default"


def test_engines_missing_for_the_rules_are_refused():
    settings = load_settings(
        database_url="sqlite://", routing={"rules": [{"engine": "small"}], "engines": {"small": {}}}
    )
    with pytest.raises(ValueError, match="small"):
        ProfileRules(settings.routing, {"default": ScriptedEngine()})


def test_answered_by_label():
    assert (
        answered_by_label(ModelInfo("/m/base/smollm2-135m-instruct", "tickets-smollm2-v1", "float32", "transformers"))
        == "transformers:tickets-smollm2-v1"
    )
    assert (
        answered_by_label(ModelInfo("/m/base/smollm2-135m-instruct/", None, "float32", "transformers"))
        == "transformers:smollm2-135m-instruct"
    )


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_meter_shares_overlapping_time():
    clock = Clock()
    meter = EngineMeter(clock)
    a = meter.enter(1)  # t=0: A alone
    clock.t = 1.0
    b = meter.enter(2)  # t=1: B and C join
    clock.t = 4.0
    share_a = meter.leave(a, 1)  # 1 s alone + 3 s shared by 3
    clock.t = 6.0
    share_bc = meter.leave(b, 2)  # 3 s / 3 + 2 s / 2
    assert share_a == pytest.approx(2.0)
    assert share_bc == pytest.approx(2.0)
    assert share_a + 2 * share_bc == pytest.approx(meter.busy_s) == pytest.approx(6.0)
    assert meter.inflight == 0
    clock.t = 10.0  # idle time is nobody's
    mark = meter.enter(1)
    clock.t = 10.5
    assert meter.leave(mark, 1) == pytest.approx(0.5)
