# The README's commands: `make demo`, `make run` and `make test`. Each sets everything up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo run test lint bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/usagewatch demo

run: setup
	$(BIN)/usagewatch serve

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/ledger_bench.py
	$(BIN)/python bench/usage_bench.py
	$(BIN)/python bench/batch_bench.py
	$(BIN)/python bench/gate_bench.py
	$(BIN)/python bench/alerts_bench.py
	$(BIN)/python bench/report_bench.py --records 1000000
	$(BIN)/python bench/dashboard_bench.py --records 1000000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
