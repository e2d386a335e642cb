# Two commands on a fresh machine: `make run` and `make test`. Both create .venv as needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/dev.txt
# `make lock` keeps the locked versions that still fit pyproject.toml; `make lock UPGRADE=1`
# moves every package to the newest version its range allows.
UPGRADE ?=
# The one conflict `pip check` may report: bip32's coincurve<21 pin, overridden on purpose
# (requirements/overrides.txt).
PIP_CHECK_OK := ^bip32 5.0.0 has requirement coincurve<21,>=15.0, but you have coincurve 21
# Python keeps compiled bytecode (__pycache__/, which git ignores) unless the environment says
# not to, as some machines' do; without it every pytest process compiles the tree again (3 s).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-fast lint format lock redis browser ha-tools wrk bench bench-scale soak chaos ha \
	fuzz bot demo clean

# Installs exactly the lock: every package at its locked version, checked against its hashes
# (the lock holds the build backend too, so `-e .` builds offline of anything unpinned). The
# lock is complete (uv resolved it, overrides included), so pip resolves nothing (--no-deps)
# and `pip check` then checks the result.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps --require-hashes -r $(LOCK)
	PYTHONWARNINGS=ignore $(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check > $(VENV)/pip-check.txt || ! grep -v '$(PIP_CHECK_OK)' $(VENV)/pip-check.txt
	touch $(STAMP)

# Regenerate the lock from pyproject.toml (runtime and dev ranges) and requirements/build.in,
# for Python 3.11 on every platform, with the hashes of every file of each locked version.
lock: | $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml requirements/build.in --extra dev --universal \
	  --python-version 3.11 --generate-hashes --custom-compile-command 'make lock' \
	  --override requirements/overrides.txt \
	  $(if $(UPGRADE),--upgrade) --quiet -o $(LOCK)

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet 'uv>=0.13,<0.14'

# vnode with its embedded PostgreSQL and Redis and the simulated node, on :3001.
run: $(STAMP)
	$(BIN)/vnode serve

lint: $(STAMP)
	$(BIN)/ruff check vnode vnode_sim harness tests bench proving
	$(BIN)/ruff format --check vnode vnode_sim harness tests bench proving
	$(BIN)/mypy vnode vnode_sim harness tests bench proving

# ruff format (settings in pyproject.toml) of the whole tree, or of `FILES="path ..."`; `make
# lint` fails on a file it would change.
FILES ?= vnode vnode_sim harness tests bench proving
format: $(STAMP)
	$(BIN)/ruff format $(FILES)

# The event tests start a real redis-server; install Debian's when it is missing (needs root).
redis:
	@command -v redis-server >/dev/null || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server)

# The web pages' tests drive a real headless Chromium: Debian's chromium and chromium-driver.
browser:
	@(command -v chromium >/dev/null && command -v chromedriver >/dev/null) || \
	  (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

# The benchmarks' load generator: Debian's wrk (C, about 35 us of CPU per request). pgbench, the
# reference, is C too; the Python generator the benchmarks fall back to costs more CPU per
# request on the same 2 cores and lowered the transfer ratio from 0.27 to 0.24 (docs/PERFORMANCE.md).
wrk:
	@command -v wrk >/dev/null || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)

# The HA cluster (harness/ha.py, `make ha`, tests/ha): Debian's haproxy, installed, and etcd
# from Debian's etcd-server package, extracted into the venv rather than installed (the package
# starts a system-wide etcd service; the harness runs its own on loopback). Patroni is a Python
# dev dependency (the lock).
ETCD_ROOT := $(VENV)/etcd
ha-tools:
	@command -v haproxy >/dev/null || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy)
	@command -v etcd >/dev/null || test -x $(ETCD_ROOT)/usr/bin/etcd || ( \
	  deb=$$(mktemp -d) && cd $$deb && (apt-get download -qq etcd-server 2>/dev/null || \
	  (apt-get update -qq && apt-get download -qq etcd-server)) && \
	  dpkg -x etcd-server_*.deb $(abspath $(ETCD_ROOT)) && rm -rf $$deb)

test: lint redis browser ha-tools
	$(BIN)/pytest

# The edit-test loop: tests/unit and tests/integration (the app in-process on the embedded
# PostgreSQL and the sim; tests/integration/events also starts a redis-server), without lint, on
# 3 pytest-xdist workers (a test file runs whole on one worker; the workers share one embedded
# cluster, each with databases of its own), with the `fast` hypothesis profile (tests/conftest.py:
# a fifth of the examples of each property test; `make test` runs the full counts, on one
# process). It leaves out tests/integration/ledger/test_stateful.py, the hypothesis state machine
# of the ledger (about 43 s on its own), which `make test` runs with everything else.
# Three workers on 2 cores: a fifth of the run is tests waiting (a database restarted, a held
# payment, a retry's backoff), which a third worker fills. Measured (docs/PERFORMANCE.md): 949
# tests, 50.7 s for the target with 3 workers, 56.3-58.1 s with 2, at bb24db9.
test-fast: $(STAMP) redis browser
	$(BIN)/pytest tests/unit tests/integration --ignore=tests/integration/ledger/test_stateful.py \
	  --hypothesis-profile fast -n 3 --dist loadfile -q

bench: $(STAMP) redis wrk
	$(BIN)/python bench/run.py

# Issue 13's "Scale" table: a ledger of 1,000,000 users and 10,000,000 history rows built by
# COPY, against an empty database in the same run (about 25 minutes with its 10-minute mixed
# load; bench/README.md). Alone: `make bench` runs it once too, in its first round.
bench-scale: $(STAMP) wrk
	$(BIN)/python bench/scale.py

# The proving ground (docs/RELIABILITY.md): a mixed load, the same under faults, and fuzzing.
soak: $(STAMP) redis
	$(BIN)/python -m proving.soak

chaos: $(STAMP) redis
	$(BIN)/python -m proving.chaos

# Failover under load (docs/RELIABILITY.md): the chaos load on a 3-node Patroni cluster behind
# HAProxy; the primary crashed at 20 s, a planned switchover later.
ha: $(STAMP) redis ha-tools
	$(BIN)/python -m proving.ha

fuzz: $(STAMP)
	$(BIN)/python -m proving.fuzz

# The bitMaskRGB Telegram bot. Only VNODE_BOT_TOKEN (from @BotFather) is needed beside a
# `make run`: the rest is found in the data directory (docs/BOT.md).
bot: $(STAMP)
	@test -n "$$VNODE_BOT_TOKEN" || (echo "VNODE_BOT_TOKEN is not set: get a token from @BotFather, or try make demo (no account needed)" >&2; exit 2)
	$(BIN)/vnode bot

# The bot without Telegram: a web chat page on http://127.0.0.1:3003 (docs/BOT.md).
demo: $(STAMP)
	$(BIN)/vnode demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
