# Two commands on a fresh clone: `make serve` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: serve production test test-fast test-e2e models lint docs

# Installs say what they do on stderr (pip itself is quiet), so a first `make serve` is not a silent minute and
# `make production`'s stdout stays the server's JSON access log.
$(BIN)/python:
	@echo "creating the virtual environment $(VENV) (first run only)..." >&2
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	@echo "installing the runtime packages into $(VENV) (first run only, a minute or two)..." >&2
	@$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	@echo "installing the runtime, test and lint packages into $(VENV) (first run only, a few minutes)..." >&2
	@$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.runtime

$(VENV)/.e2e: requirements.txt requirements-dev.txt requirements-e2e.txt | $(BIN)/python
	@echo "installing the end-to-end packages (pyspark, dask, selenium) into $(VENV) (first run only, a few minutes)..." >&2
	@$(BIN)/pip install --quiet -r requirements-e2e.txt
	@touch $@ $(VENV)/.dev $(VENV)/.runtime

serve: $(VENV)/.runtime  ## serve predictions on http://127.0.0.1:5000 (development server)
	@$(BIN)/python app.py

production: $(VENV)/.runtime  ## the production server on http://127.0.0.1:8000 (HOST, PORT, WEB_CONCURRENCY)
	@$(BIN)/python -m lib.server

test: $(VENV)/.dev  ## the whole suite but the heavy end-to-end checks (about 4 minutes): the README's test command
	$(BIN)/python -m pytest -m "not e2e"

test-fast: $(VENV)/.dev  ## the in-process tests only, in seconds (no live servers, full-data rebuild or fuzzing)
	$(BIN)/python -m pytest -m "not slow and not e2e"

test-e2e: $(VENV)/.e2e  ## heavy end-to-end checks (browser, container, replicas, Spark); installs requirements-e2e.txt; each skips with its reason where its tool is missing
	@if grep -rqs "pytest.mark.e2e" tests; then $(BIN)/python -m pytest -m e2e; \
	else echo "test-e2e: no end-to-end test is defined yet"; fi

models: $(VENV)/.runtime  ## rebuild lib/models from the Kaggle train.tsv (lib/data/train.tsv, else a shared copy; DATA=path)
	$(BIN)/python build_model.py $(if $(DATA),--data $(DATA))

lint: $(VENV)/.dev  ## ruff (style, imports, bugbear) and mypy over the product, its tests and benchmarks (see pyproject.toml)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

docs: $(VENV)/.dev  ## build the documentation site (README's pages under docs/) into site/; a broken link or anchor fails it
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site  # not --quiet: it hides the warnings --strict counts
