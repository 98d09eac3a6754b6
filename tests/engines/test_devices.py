"""model.device / model.dtype resolution. This machine has no GPU: the CUDA branches are tested as
resolution logic (torch.cuda.is_available patched), never as a CUDA run; bench/gpu.py is the GPU check."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from finetune.config import TrainArgs
from server.config import ModelSettings, load_settings
from server.engines.loading import load_model, resolve_device, resolve_dtype


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch):
    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return set_count


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:0", "cuda:3", " CUDA:1 "])
def test_device_setting_accepts_torch_spellings(value: str) -> None:
    assert ModelSettings(device=value).device == value.strip().lower()


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "mps", "cpu:0", "", "cuda0"])
def test_device_setting_refuses_a_bad_value_by_name(value: str) -> None:
    with pytest.raises(ValidationError, match=f"device {value!r} is not one of auto, cpu, cuda, cuda:N"):
        ModelSettings(device=value)


def test_device_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_MODEL__DEVICE", "cpu")
    assert load_settings().model.device == "cpu"
    monkeypatch.setenv("TRIAGE_MODEL__DEVICE", "tpu")
    with pytest.raises(ValidationError, match="'tpu'"):
        load_settings()


def test_finetune_device_uses_the_same_rule() -> None:
    assert TrainArgs(device="cuda:1").device == "cuda:1"
    with pytest.raises(ValidationError, match="device 'gpu'"):
        TrainArgs(device="gpu")


def test_auto_on_a_cpu_host_is_the_cpu(fake_gpus) -> None:
    fake_gpus(0)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_with_a_gpu_is_cuda(fake_gpus) -> None:
    fake_gpus(2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")  # explicit cpu stays cpu on a GPU host


def test_explicit_cuda_without_that_gpu_is_an_error(fake_gpus) -> None:
    fake_gpus(0)
    with pytest.raises(RuntimeError, match="'cuda' but torch sees no CUDA GPU"):
        resolve_device("cuda")
    fake_gpus(1)
    with pytest.raises(RuntimeError, match=r"'cuda:3' but torch sees 1 CUDA GPU"):
        resolve_device("cuda:3")


def test_dtype_auto_is_decided_by_the_device_not_the_host(fake_gpus) -> None:
    fake_gpus(1)  # a GPU host: a CPU model must still get fp32
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16
    assert resolve_dtype("auto", "cuda") == torch.bfloat16


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_explicit_dtype_wins_on_every_device(device: str) -> None:
    assert resolve_dtype("float32", device) == torch.float32
    assert resolve_dtype("bfloat16", device) == torch.bfloat16


@pytest.mark.model
def test_load_model_on_the_cpu_is_fp32_with_auto(base_model_dir) -> None:
    """No GPU here: auto resolves to the CPU and fp32 (the measured default), every parameter there."""
    model, _, dtype = load_model(ModelSettings(base=str(base_model_dir), device="auto", dtype="auto"))
    assert dtype == torch.float32
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
