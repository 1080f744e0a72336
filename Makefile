# Two commands set everything up: `make run` (the whole stack on the embedded default) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install redis browser lint typecheck pytest clean

# the service with its test tools, and the dev tools (devtools/: dev broker, simulator, `adapter dev`)
$(STAMP): pyproject.toml devtools/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -e ./devtools
	touch $(STAMP)

install: $(STAMP)

redis:
	@bash scripts/ensure-redis

browser:
	@bash scripts/ensure-chromium

lint: install
	$(BIN)/ruff check adapter devtools tests scripts

typecheck: install
	$(BIN)/mypy adapter devtools/adapter_devtools

pytest: install redis browser
	$(BIN)/pytest

test: lint typecheck pytest

run: install
	$(BIN)/adapter dev

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
