# Two commands on a fresh machine: `make run` and `make test`. Both create .venv as needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint redis bench soak chaos fuzz bot clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/vnode serve

lint: $(STAMP)
	$(BIN)/ruff check vnode tests bench proving
	$(BIN)/mypy vnode

# The event tests start a real redis-server; install Debian's when it is missing (needs root).
redis:
	@command -v redis-server >/dev/null || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server)

test: lint redis
	$(BIN)/pytest

bench: $(STAMP) redis
	$(BIN)/python bench/run.py

# The proving ground (docs/RELIABILITY.md): a mixed load, the same under faults, and fuzzing.
soak: $(STAMP) redis
	$(BIN)/python -m proving.soak

chaos: $(STAMP) redis
	$(BIN)/python -m proving.chaos

fuzz: $(STAMP)
	$(BIN)/python -m proving.fuzz

# The bitMaskRGB Telegram bot (needs VNODE_BOT_TOKEN, VNODE_URL, VNODE_API_KEY, ...).
bot: $(STAMP)
	$(BIN)/vnode bot

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
