# Two commands set everything up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install -q
# test processes (pytest-xdist; each test file runs in one of them): CI has 2 cores
TEST_WORKERS ?= 2

.PHONY: demo docs test lint typecheck unit bench clean

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

# what the documentation needs (MkDocs and mkdocstrings; the build fetches nothing)
$(VENV)/.docs: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[docs]'
	touch $@

demo: $(VENV)/.demo
	$(BIN)/rota run examples/ml_pipeline.py

# the site in site/, from docs/ and the docstrings; any warning fails it
docs: $(VENV)/.docs
	$(BIN)/mkdocs build --strict --site-dir site

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(VENV)/.dev
	$(BIN)/mypy

unit: $(VENV)/.dev
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-podman.sh
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25

test: lint typecheck unit

bench: $(VENV)/.dev
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) site .mypy_cache .ruff_cache .pytest_cache
