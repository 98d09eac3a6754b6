"""`triage finetune`'s flags, generated from the config model: each sets its key, and bad values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import finetune.train
from finetune.cli import register
from finetune.config import FinetuneConfig, flags

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[FinetuneConfig]:
    got: list[FinetuneConfig] = []

    def fake_main(cfg: FinetuneConfig, settings: object) -> Path:
        got.append(cfg)
        return Path("models/adapters") / cfg.name

    monkeypatch.setattr(finetune.train, "main", fake_main)
    return got


def test_every_flag_sets_its_config_key(app: typer.Typer, trained: list[FinetuneConfig]) -> None:
    args = ["--config", str(ROOT / "finetune/configs/tickets.yaml"), "--name", "2024"]
    args += ["--data", "a.csv", "--data", "b.csv", "--base", "models/base", "--epochs", "1.5", "--lr", "0.001"]
    args += ["--rank", "4", "--alpha", "8", "--target-modules", "q_proj, v_proj", "--batch-size", "2"]
    args += ["--max-length", "512", "--max-steps", "3", "--max-rows", "10", "--seed", "7", "--target", "labels"]
    args += ["--no-feedback", "--no-calibrate", "--set", "train.warmup_ratio=0.1", "--set", "head.enabled=true"]
    result = CliRunner().invoke(app, ["finetune", *args])
    assert result.exit_code == 0, result.output
    [cfg] = trained
    assert cfg.name == "2024" and cfg.data.files == ["a.csv", "b.csv"] and cfg.base == "models/base"
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.batch_size, cfg.train.max_length) == (1.5, 0.001, 2, 512)
    assert (cfg.train.max_steps, cfg.train.seed, cfg.train.warmup_ratio) == (3, 7, 0.1)
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.target_modules) == (4, 8, ["q_proj", "v_proj"])
    assert (cfg.data.max_rows, cfg.data.target, cfg.data.feedback, cfg.calibrate) == (10, "labels", False, False)
    assert cfg.head.enabled is True
    assert "adapter written: models/adapters/2024" in result.output


def test_unset_flags_leave_the_file_alone(app: typer.Typer, trained: list[FinetuneConfig]) -> None:
    result = CliRunner().invoke(app, ["finetune", "-c", str(ROOT / "finetune/configs/tickets.yaml")])
    assert result.exit_code == 0, result.output
    [cfg] = trained
    assert cfg.name == "tickets-smollm2-v1" and cfg.data.feedback is True and cfg.train.epochs == 3.0


def test_flags_are_the_fields_marked_in_the_model() -> None:
    assert [f.option for _, _, f in flags()] == [
        "--name",
        "--base",
        "--calibrate/--no-calibrate",
        "--data",
        "--feedback/--no-feedback",
        "--feedback-roles",
        "--max-rows",
        "--target",
        "--rank",
        "--alpha",
        "--target-modules",
        "--epochs",
        "--lr",
        "--batch-size",
        "--max-length",
        "--seed",
        "--max-steps",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "labelz"], "data.target: Input should be 'full' or 'labels'"),
        (["--set", "train.epoch=3"], "train.epoch: unknown key"),
        (["--rank", "0"], "lora.r: Input should be greater than or equal to 1"),
    ],
)
def test_bad_values_exit_2_with_the_key(
    app: typer.Typer, trained: list[FinetuneConfig], args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["finetune", *args])
    assert result.exit_code == 2 and message in result.output and not trained


def test_set_without_equals_is_a_usage_error(app: typer.Typer, trained: list[FinetuneConfig]) -> None:
    result = CliRunner().invoke(app, ["finetune", "--set", "train.epochs"])
    assert result.exit_code == 2 and not trained
