# The two commands of the README: `make up` (run the whole pipeline locally) and `make test`.
# Both create .venv and install the project on first use; nothing else needs installing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test lint bench install

$(BIN)/postbacks: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	touch $@

install: $(BIN)/postbacks

up: $(BIN)/postbacks
	$(BIN)/postbacks up

lint: $(BIN)/postbacks
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(BIN)/postbacks
	$(BIN)/postbacks bench --json bench-results.json
