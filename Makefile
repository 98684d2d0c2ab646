# The two commands of the README: `make up` (run the whole pipeline locally) and `make test`.
# Both create .venv, install the project and fetch Apache Kafka (Java 17+ and Maven from the machine)
# on first use; nothing else needs installing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test lint bench install

$(BIN)/postbacks: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	touch $@

# Apache Kafka's jars from Maven Central into ~/.cache/postback-pipeline (once; later runs reuse them).
install: $(BIN)/postbacks
	$(BIN)/postbacks kafka install

up: install
	$(BIN)/postbacks up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: install
	$(BIN)/postbacks bench --json bench-results.json
