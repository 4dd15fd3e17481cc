# Two commands for a fresh machine: `make run` starts the exporter, `make test` runs the tests.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
CONFIG ?= config.example.yaml
BIN := $(VENV)/bin

# Dependencies come from requirements-test.lock: every package, transitive ones included, pinned
# and hash-checked, the versions the image has (requirements.lock is its subset). The package goes
# on top with nothing resolved, and pip check fails the install when pyproject.toml asks for what
# the lock does not hold: then `make lock`.
$(VENV)/.installed: pyproject.toml requirements.lock requirements-test.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-test.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $@

# Writes both lock files again from pyproject.toml, for every Python it supports (3.10 on) and
# every platform, keeping each pin that still fits; LOCK_ARGS=--upgrade moves every pin to the
# newest release allowed. The test lock is resolved first; the runtime lock is its subset.
.PHONY: lock
LOCK = $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.10 --no-python-downloads --quiet \
	--generate-hashes --extra sentry --custom-compile-command "make lock" $(LOCK_ARGS)
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(LOCK) --extra test --output-file requirements-test.lock
	$(LOCK) --constraint requirements-test.lock --output-file requirements.lock

.PHONY: install run demo test bench dashboards docs history
install: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/bittensor-validator-exporter --config.file $(CONFIG)

# The history command with the same configuration, e.g. make history ARGS="--hotkey 5F... --since 2026-11-01",
# make history ARGS="backup backups/"; after make demo: make history CONFIG=config.demo.yaml.
history: $(VENV)/.installed
	$(BIN)/bittensor-validator-exporter history --config.file $(CONFIG) $(ARGS)

# The demo chain (simnode.demo: the watched demo validator changes every DEMO_CHANGE_EVERY
# seconds, blocks stamped with the wall clock) and the exporter reading it (config.demo.yaml:
# watched hotkeys that exist on the demo chain; its history in DEMO_HISTORY). Every demo is a
# new chain from block 0, so its history starts empty: changes between two demo chains are no
# chain's changes. DEMO_NODE_PORT, DEMO_HISTORY and DEMO_FLAGS (more exporter flags, e.g.
# --web.listen-address :9745) let it run beside other things; tests/test_readme.py runs it so.
DEMO_NODE_PORT ?= 9944
DEMO_CHANGE_EVERY ?= 60
DEMO_HISTORY ?= demo-history.db
DEMO_FLAGS ?=
demo: $(VENV)/.installed
	rm -f '$(DEMO_HISTORY)' '$(DEMO_HISTORY)-wal' '$(DEMO_HISTORY)-shm'
	$(BIN)/python -m simnode.demo --port $(DEMO_NODE_PORT) --change-every $(DEMO_CHANGE_EVERY) & \
	trap 'kill $$!' EXIT INT TERM; \
	BITTENSOR_EXPORTER_ENDPOINTS=ws://127.0.0.1:$(DEMO_NODE_PORT) \
	$(BIN)/bittensor-validator-exporter --config.file config.demo.yaml --history.path '$(DEMO_HISTORY)' $(DEMO_FLAGS)

# PYTHONDONTWRITEBYTECODE (set by some shells and images) is cleared for the tests: with it, every
# xdist worker rewrote and compiled every test module again at collection (~10 s instead of ~4 s a
# worker here) and every exporter process a test starts compiled the package again.
test: $(VENV)/.installed
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest

# The Grafana dashboards are code (dashboards_src/, grafana-foundation-sdk; Python 3.11+): this
# writes dashboards/*.json, which Grafana provisions; commit both. tests/test_dashboards_src.py
# fails when the committed JSON is not what the code builds.
dashboards: $(VENV)/.installed
	$(BIN)/python -m dashboards_src

# The generated reference pages, docs/metrics.md (from exporter/serving/metric_defs.py) and
# docs/alerts.md (from alerting/*.rules.yml); run after changing either. A test fails while they differ.
docs: $(VENV)/.installed
	$(BIN)/python -m tools.docs_gen

# Mainnet-scale benchmark against the baselines, one table, then each refresh stage's CPU on
# issue 15's larger chain at 50 ms a round trip, history on (several minutes); see BENCHMARKS.md.
# BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--runs 3 --stages-runs 9 --json bench.json"
# (--no-stages skips the second part).
bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench $(BENCH_ARGS)
