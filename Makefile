# Two commands set everything up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install -q

.PHONY: demo test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

# what the example needs (the core plus scikit-learn)
$(VENV)/.demo: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[examples]'
	touch $@

# what the tests need: every extra and the test tools (PostgreSQL and Chromium: `make unit`)
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev]'
	touch $@

demo: $(VENV)/.demo
	$(BIN)/rota run examples/ml_pipeline.py

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(VENV)/.dev
	$(BIN)/mypy

unit: $(VENV)/.dev
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest

test: lint typecheck unit

bench: $(VENV)/.dev
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
