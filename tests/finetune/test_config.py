"""The fine-tuning config: one validated model for YAML files, `--set` overrides and recorded manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from finetune.config import ConfigError, FinetuneConfig, PoolKind, config_from_dict, load_config
from server.config import load_settings
from server.evaluation.gate import load_rules
from server.heads.head import POOL_KINDS

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "finetune/configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path: Path) -> None:
    """The folder also holds the server settings (`*-serve.yaml`) and gate rules (`*-gate.yaml`) of the
    fine-tuned models; each loads with its own validator."""
    if path.stem.endswith("-serve"):
        load_settings(path)
    elif path.stem.endswith("-gate"):
        load_rules(path)
    else:
        cfg = load_config(path)
        assert cfg.name and cfg.data.files


def test_shipped_fine_tuning_configs_are_found() -> None:
    names = {p.name for p in CONFIGS}
    assert {"tickets.yaml", "tickets-v2.yaml", "banking77.yaml", "banking77-v2.yaml", "clinc150.yaml"} <= names


@pytest.mark.parametrize("manifest", sorted((ROOT / "models/adapters").glob("*/manifest.json")), ids=str)
def test_configs_recorded_in_manifests_still_validate(manifest: Path) -> None:
    """`triage fit-head` rebuilds the job's config from the manifest; older manifests lack newer keys."""
    recorded = json.loads(manifest.read_text())["config"]
    cfg = config_from_dict(recorded)
    assert cfg.name == recorded["name"]


def test_misspelt_choice_is_refused_with_its_key_and_choices(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  target: labelz\n")
    with pytest.raises(ConfigError, match=r"data\.target: Input should be 'full' or 'labels', got 'labelz'"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"data\.target"):
        load_config(None, {"data.target": "labelz"})


def test_unknown_key_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown key; known: epochs, lr, "):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"lora\.rank: unknown key"):
        load_config(None, {"lora.rank": "8"})
    with pytest.raises(ConfigError, match=r"'name' is not a section"):
        load_config(None, {"name.first": "x"})


def test_text_fields_keep_the_text_as_written() -> None:
    cfg = load_config(ROOT / "finetune/configs/tickets.yaml", {"name": "2024", "taxonomy": "007"})
    assert cfg.name == "2024" and cfg.taxonomy == "007"
    assert load_config(None, {"data.text_column": "null"}).data.text_column is None
    with pytest.raises(ConfigError, match=r"name: Input should be a valid string, got 2024"):
        config_from_dict({"name": 2024})  # a YAML file's `name: 2024` is a number: refused, not converted


def test_overrides_are_read_as_their_field_type() -> None:
    cfg = load_config(
        ROOT / "finetune/configs/tickets.yaml",
        {
            "train.epochs": "1",
            "train.lr": "2e-4",
            "lora.target_modules": "[q_proj, v_proj]",
            "data.files": "a.csv",
            "data.feedback": "false",
            "head.pools": "[[12, mean]]",
            "name": None,  # an unset flag
        },
    )
    assert cfg.train.epochs == 1.0 and cfg.train.lr == 2e-4
    assert cfg.lora.target_modules == ["q_proj", "v_proj"] and cfg.data.files == ["a.csv"]
    assert cfg.data.feedback is False and cfg.name == "tickets-smollm2-v1"
    assert [(p.layer, p.how) for p in cfg.head.pool_list] == [(12, "mean")]
    with pytest.raises(ConfigError, match=r"train\.batch_size: Input should be a valid integer"):
        load_config(None, {"train.batch_size": "eight"})
    with pytest.raises(ConfigError, match=r"head\.pools\.0\.1: Input should be 'mean', 'last' or 'history'"):
        load_config(None, {"head.pools": "[[12, max]]"})


def test_yaml_reads_exponent_floats(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 3e-4\n  epochs: 2\n")
    cfg = load_config(f)
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.epochs, float)


def test_recorded_config_round_trips() -> None:
    cfg = load_config(ROOT / "finetune/configs/tickets-v2.yaml")
    again = config_from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and cfg.to_dict()["head"]["pools"] == [[16, "mean"], [16, "history"], [30, "last"]]


def test_pool_kinds_match_the_server() -> None:
    assert get_args(PoolKind) == POOL_KINDS


def test_defaults_validate() -> None:
    assert FinetuneConfig().data.target == "full"
