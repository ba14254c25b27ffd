# Two commands on a fresh clone: `make serve` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data/kaggle/train.tsv

.PHONY: serve test models lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

serve: $(VENV)/.runtime  ## serve predictions on http://127.0.0.1:5000 (development server)
	$(BIN)/python app.py

test: $(VENV)/.dev  ## run the whole test suite
	$(BIN)/python -m pytest

models: $(VENV)/.runtime  ## rebuild lib/models from the Kaggle train.tsv (DATA=path)
	$(BIN)/python build_model.py --data $(DATA)

lint: $(VENV)/.dev  ## ruff (style, imports, bugbear) and mypy over the product's modules (see pyproject.toml)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy
