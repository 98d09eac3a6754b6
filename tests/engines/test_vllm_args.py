"""`triage vllm-args` / server.engines.vllm.args.serve_command: the vLLM server's argv."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from server.cli import app
from server.config import DEFAULT_BASE_MODEL_DIR, load_settings
from server.engines.vllm.args import SERVE_ENV, serve_command, shell_line
from server.registry import RegistryError

ROOT = Path(__file__).resolve().parents[2]


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _lora_modules(argv: list[str]) -> dict[str, str]:
    start = argv.index("--lora-modules") + 1
    end = next(i for i in range(start, len(argv)) if argv[i].startswith("--"))
    return dict(m.split("=", 1) for m in argv[start:end])


def test_shipped_registry_serves_every_lora_adapter_of_the_base() -> None:
    argv = serve_command(load_settings())
    assert argv[:2] == ["vllm", "serve"]
    assert _value(argv, "--model") == str(DEFAULT_BASE_MODEL_DIR)
    assert _value(argv, "--served-model-name") == "triage-base"
    modules = _lora_modules(argv)
    assert "tickets-smollm2-v1" in modules and "tickets-smollm2-v2" in modules
    assert "clinc150-smollm2-head" not in modules  # a label head has no LoRA weights
    for name, path in modules.items():
        assert Path(path).is_absolute() and (Path(path) / "adapter_config.json").is_file(), name
        assert Path(path) == ROOT / "models" / "adapters" / name
    assert "--enable-lora" in argv
    assert _value(argv, "--max-lora-rank") == "16"  # every shipped adapter is r=16
    assert _value(argv, "--max-loras") == str(len(modules) + 1)  # room for a runtime-loaded promotion
    assert _value(argv, "--structured-outputs-config.backend") == "outlines"
    assert _value(argv, "--max-model-len") == "2048"
    assert _value(argv, "--port") == "8001"
    assert _value(argv, "--dtype") == "bfloat16"  # auto: not vLLM's auto, which is the checkpoint's fp32


def _adapter(root: Path, name: str, *, r: int, base: str, rank_pattern: dict | None = None, kind: str = "lora"):
    folder = root / "adapters" / name
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": r, "rank_pattern": rank_pattern or {}}))
    (folder / "manifest.json").write_text(json.dumps({"name": name, "kind": kind, "base_model": {"path": base}}))
    return folder


def test_rank_is_the_largest_rounded_up_to_a_vllm_rank_and_other_bases_are_left_out(tmp_path: Path) -> None:
    base = str(DEFAULT_BASE_MODEL_DIR)
    _adapter(tmp_path, "small", r=8, base=base)
    _adapter(tmp_path, "wide", r=8, base=base, rank_pattern={"q_proj": 40})
    _adapter(tmp_path, "other-base", r=128, base=str(tmp_path / "another-model"))
    (tmp_path / "registry.json").write_text(json.dumps({"active": "small", "history": []}))
    settings = load_settings(
        model={"registry": tmp_path / "registry.json", "dtype": "float32"}, vllm={"port": 9100, "max_lora_rank": 8}
    )
    argv = serve_command(settings, python="/opt/venv/bin/python")
    assert argv[:3] == ["/opt/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert set(_lora_modules(argv)) == {"small", "wide"}
    assert _value(argv, "--max-lora-rank") == "64"  # 40 from rank_pattern -> vLLM's next rank
    assert _value(argv, "--port") == "9100" and _value(argv, "--dtype") == "float32"


def test_rank_floor_from_settings_leaves_room_for_a_later_promotion(tmp_path: Path) -> None:
    _adapter(tmp_path, "small", r=8, base=str(DEFAULT_BASE_MODEL_DIR))
    settings = load_settings(model={"registry": tmp_path / "registry.json"}, vllm={"max_lora_rank": 32})
    assert _value(serve_command(settings), "--max-lora-rank") == "32"


def test_no_adapters_no_lora_flags(tmp_path: Path) -> None:
    settings = load_settings(model={"registry": tmp_path / "registry.json", "adapter": "none"})
    argv = serve_command(settings)
    assert "--enable-lora" not in argv and "--lora-modules" not in argv and "--max-lora-rank" not in argv


def test_merged_model_is_served_under_the_adapter_name(tmp_path: Path) -> None:
    merged = tmp_path / "merged dir" / "tickets"
    merged.mkdir(parents=True)
    (merged / "config.json").write_text("{}")
    (merged / "manifest.json").write_text(json.dumps({"adapter": {"name": "tickets-smollm2-v1"}}))
    argv = serve_command(load_settings(), merged=merged)
    assert _value(argv, "--model") == str(merged)
    assert _value(argv, "--served-model-name") == "tickets-smollm2-v1"
    assert "--enable-lora" not in argv
    with pytest.raises(RegistryError, match="merged model folder not found"):
        serve_command(load_settings(), merged=tmp_path / "nothing")


def test_shell_line_quotes_what_the_shell_would_split(tmp_path: Path) -> None:
    argv = ["vllm", "serve", "--model", str(tmp_path / "a b" / "it's")]
    line = shell_line(argv, SERVE_ENV)
    assert line.startswith("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve")
    assert shlex.split(line) == ["VLLM_ALLOW_RUNTIME_LORA_UPDATING=True", *argv]


def test_cli_prints_one_line_equal_to_the_builder() -> None:
    result = CliRunner().invoke(app, ["vllm-args", "--python", "/x/python"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert shlex.split(lines[0])[1:] == serve_command(load_settings(), python="/x/python")


def test_cli_merged_without_a_merge_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["vllm-args", "--merged", "--merged-dir", str(tmp_path / "none")])
    assert result.exit_code != 0
    assert "triage models merge" in result.output
