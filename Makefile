# Two commands for a fresh machine: `make run` starts the exporter, `make test` runs the tests.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
CONFIG ?= config.example.yaml
BIN := $(VENV)/bin

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,sentry]"
	touch $@

.PHONY: install run demo test bench
install: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/bittensor-validator-exporter --config.file $(CONFIG)

# A simulated node with a demo chain state, and the exporter reading it (config.demo.yaml:
# watched hotkeys that exist on the demo chain).
demo: $(VENV)/.installed
	$(BIN)/python -m simnode --port 9944 --scenario demo & \
	trap 'kill $$!' EXIT INT TERM; \
	$(BIN)/bittensor-validator-exporter --config.file config.demo.yaml

test: $(VENV)/.installed
	$(BIN)/python -m pytest

# Mainnet-scale benchmark against the baselines, one table (several minutes); see BENCHMARKS.md.
# BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--runs 3 --json bench.json".
bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench $(BENCH_ARGS)
