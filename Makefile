# Two commands on a fresh machine: `make run` and `make test`. Both create .venv as needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/vnode serve

lint: $(STAMP)
	$(BIN)/ruff check vnode tests bench
	$(BIN)/mypy vnode

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/transfers.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
