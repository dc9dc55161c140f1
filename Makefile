# sanzi: two commands for a newcomer, `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: run setup migrate demo test check clean bench

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 is required (python3.11 or python3 on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

setup: $(BIN)/.installed

migrate: setup
	$(BIN)/sanzi db upgrade --no-prompt

demo: migrate
	$(BIN)/sanzi geography import
	$(BIN)/sanzi demo load
	$(BIN)/sanzi demo seed --years 2 --villages 30 --seed 1 --if-empty

run: demo
	@echo "sanzi is serving on http://$(HOST):$(PORT)  (API docs: http://$(HOST):$(PORT)/schema)"
	$(BIN)/sanzi run --host $(HOST) --port $(PORT)

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

# benchmarks/README.md: QUICK=1 for the two-minute run; BENCH_OUT=DIR writes the results there instead
bench: setup
	$(BIN)/python -m benchmarks.run $(if $(QUICK),--quick) $(if $(BENCH_OUT),--out $(BENCH_OUT))

check: setup
	$(BIN)/sanzi db check

clean:
	rm -rf var/sanzi.db var/sanzi.db-* var/sessions
