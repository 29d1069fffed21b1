# The README's two set-up commands:
#   make quickstart   install into .venv, run the quickstart study and analyse it
#   make test         install into .venv (with the test tools) and run the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU machines take the CPU build of torch that pip finds on this kind of machine (a plain
# `torch` would pull a multi-GB CUDA build); machines with an NVIDIA driver let pip choose.
TORCH  ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
# The report's browser test (tests/analysis/test_report_browser.py) runs headless Chromium, Debian's package.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install quickstart test test-fast lint bench clean chromium

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get) for the report's browser test"; \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "no chromium and no apt-get: install Chromium to run the report's browser test (skipped without it)"; fi

quickstart: install
	$(BIN)/clphase run quickstart --resume
	$(BIN)/clphase analyze runs/quickstart

test: install chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: install chromium
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
