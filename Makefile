# Two commands on a fresh machine: `make run` and `make test`. Both create .venv as needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint redis bench clean

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

# The event tests start a real redis-server; install Debian's when it is missing (needs root).
redis:
	@command -v redis-server >/dev/null || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server)

test: lint redis
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/transfers.py
	$(BIN)/python bench/payments.py
	$(BIN)/python bench/events.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
