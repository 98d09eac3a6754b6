"""`triage models merge`: the merged model computes what base + adapter (peft, unmerged) compute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from server.cli import app
from server.config import load_settings
from server.engines.merge import merge_adapter
from server.registry import Registry, RegistryError, sha256_file
from tests.conftest import SEED_TICKET

ADAPTER = "tickets-smollm2-v1"


@pytest.mark.model
def test_merged_logits_equal_base_plus_adapter(tmp_path: Path, base_model_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = load_settings()
    result = merge_adapter(settings, ADAPTER, out=tmp_path / "merged", dtype="float32")
    out = result.out
    assert {"config.json", "model.safetensors", "tokenizer.json", "manifest.json", "SOURCE.txt"} <= {
        p.name for p in out.iterdir()
    }
    assert not (tmp_path / "merged.tmp").exists()

    entry = Registry(settings.model.registry).get(ADAPTER)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "merged" and manifest["dtype"] == "float32"
    assert manifest["adapter"]["name"] == ADAPTER
    assert manifest["adapter"]["files"] == entry.manifest.adapter_files
    assert manifest["base_model"]["safetensors_sha256"] == sha256_file(base_model_dir / "model.safetensors")
    assert ADAPTER in (out / "SOURCE.txt").read_text()

    tok = AutoTokenizer.from_pretrained(out)
    ids = tok(f"Subject: {SEED_TICKET['subject']}\n\n{SEED_TICKET['body']}", return_tensors="pt").input_ids
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32), str(entry.path)
    ).eval()
    base_only = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        got, want, bare = (m(ids).logits[0] for m in (merged, reference, base_only))
    # fp32 merge: only summation order differs from the LoRA side path.
    assert torch.allclose(got, want, atol=2e-3, rtol=0), float((got - want).abs().max())
    # ... and the adapter is really in there (the bare base disagrees by far more).
    assert float((bare - want).abs().max()) > 0.5
    assert bool((got.argmax(-1) == want.argmax(-1)).all())


def test_missing_adapter_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="adapter 'no-such-adapter' not found"):
        merge_adapter(load_settings(), "no-such-adapter", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()
    result = CliRunner().invoke(app, ["models", "merge", "no-such-adapter", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "adapter 'no-such-adapter' not found" in result.output and "registered:" in result.output


def test_a_head_only_entry_has_nothing_to_merge(tmp_path: Path) -> None:
    head = next((e.name for e in Registry(load_settings().model.registry).list() if not e.has_lora), None)
    if head is None:
        pytest.skip("no head-only adapter registered")
    with pytest.raises(RegistryError, match="no LoRA to merge"):
        merge_adapter(load_settings(), head, out=tmp_path / "x")


def test_bad_dtype_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["models", "merge", ADAPTER, "--dtype", "int8", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--dtype 'int8'" in result.output
