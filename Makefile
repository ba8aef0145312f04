# kvgym developer commands. `make demo` and `make test` create .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-all test-fast bench lint clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: 2.13.0 is the local CPU wheel; anything else pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[agents,dev,vllm,ray]'
	# vLLM without its dependencies (they pin a CUDA torch); the light ones came with the vllm extra.
	$(BIN)/pip install -q --no-deps "vllm==$$($(BIN)/python -c 'from kvgym.integrations.vllm_compat import VLLM_VERSION; print(VLLM_VERSION)')"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/kvgym demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check kvgym baselines agents tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
