# kvgym developer commands. Each target creates .venv and installs what it needs itself:
#   make demo       the core package only (no torch, no SB3, no dev tools), then `kvgym demo`
#   make test       the core plus the extras the tests need, Debian's chromium, then the tests
#   make artifacts  regenerate the committed artifacts with the project's own commands
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# setuptools prints a notice on every editable install of a package whose folders are remapped
# (baselines/ -> kvgym.baselines); it is informational, so it is silenced here and only here.
PIP := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q --disable-pip-version-check
# The extras `make test` installs; KVGYM_REQUIRE_EXTRAS makes a test that needs one of them
# fail instead of skip, so a missing install step can never pass as a skip.
TEST_EXTRAS := agents,dev,hf,vllm,ray
TEST_ENV := KVGYM_REQUIRE_EXTRAS=$(TEST_EXTRAS),browser
CORE := $(VENV)/.core-installed
FULL := $(VENV)/.test-installed
DEMO_OUT ?= runs/demo

.PHONY: venv demo test test-all bench lint artifacts browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(CORE): pyproject.toml Makefile | $(BIN)/python
	$(PIP) -e .
	touch $@

$(FULL): pyproject.toml Makefile | $(BIN)/python
	# torch first, pinned: 2.13.0 is the local CPU wheel; anything else pulls a CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -e '.[$(TEST_EXTRAS)]'
	# vLLM without its dependencies (they pin a CUDA torch); the light ones came with the vllm extra.
	$(PIP) --no-deps "vllm==$$($(BIN)/python -c 'from kvgym.integrations.vllm_compat import VLLM_VERSION; print(VLLM_VERSION)')"
	touch $@ $(CORE)

venv: $(FULL)

# Debian's chromium for the HTML report's browser test (never a browser downloaded by a tool).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

demo: $(CORE)
	$(BIN)/kvgym demo --out $(DEMO_OUT)

test: $(FULL) browser
	$(TEST_ENV) $(BIN)/python -m pytest -q -n 2 -m "not slow"

test-all: $(FULL) browser
	$(TEST_ENV) $(BIN)/python -m pytest -q -n 2

bench: $(FULL)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

lint: $(FULL)
	$(BIN)/ruff check kvgym baselines agents tests benchmarks

# Headless Chromium as the browser test runs it (no network, no GPU, as root).
CHROMIUM := chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync --hide-scrollbars

# The committed sweep artifacts, each made by the command the README lists for it.
artifacts: $(CORE) browser
	$(BIN)/kvgym demo --out artifacts/default_sweep --quiet
	$(CHROMIUM) --user-data-dir="$$(mktemp -d)" --window-size=1280,1500 --screenshot=docs/img/report.png \
	  "file://$(CURDIR)/artifacts/default_sweep/report.html"
	$(BIN)/kvgym findings --out artifacts/findings
	$(BIN)/kvgym ablate regret_aware --grid regret_weight=1,6,12 regret_horizon=8,24,64 --seeds 7,42,91 --quiet
	$(BIN)/kvgym trace gallery -o artifacts/workloads

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
