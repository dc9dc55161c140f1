# sanzi: two commands for a newcomer, `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: run setup fonts migrate demo test check clean bench

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 is required (python3.11 or python3 on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

DOCUMENT_FONT := var/fonts/SanziSC-Regular-v3.ttf

setup: $(BIN)/.installed fonts $(DOCUMENT_FONT)

# Documents (PDF) need a CJK font, and render fast when HarfBuzz can subset it (libharfbuzz-subset0 for each
# document, hb-subset from libharfbuzz-bin to cut the documents' own font once). As root on Debian the set-up
# installs what is missing; otherwise it says what to install and carries on.
fonts:
	@missing=""; \
	if fc-list :lang=zh family 2>/dev/null | grep -q .; then \
	  echo "CJK font: $$(fc-match -f "%{family[0]}" "sans-serif:lang=zh-cn")"; \
	else missing=" fonts-noto-cjk"; fi; \
	if ! /sbin/ldconfig -p 2>/dev/null | grep -q libharfbuzz-subset.so.0; then missing="$$missing libharfbuzz-subset0"; fi; \
	if ! command -v hb-subset >/dev/null; then missing="$$missing libharfbuzz-bin"; fi; \
	if [ -z "$$missing" ]; then echo "HarfBuzz subsetting: available"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing$$missing (Debian packages for the PDF documents)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing \
	    && fc-cache -f >/dev/null \
	    || { echo "Could not install$$missing; documents need them: apt-get install$$missing"; exit 1; }; \
	else \
	  echo "WARNING: the PDF documents need$$missing. Install with: sudo apt-get install$$missing"; \
	  echo "         (any Chinese font fontconfig finds will do: e.g. dnf install google-noto-sans-cjk-fonts)"; \
	fi

# the documents' own cut of Noto Sans CJK SC (GB 2312 and punctuation): half the time and a third of the size
$(DOCUMENT_FONT): | $(BIN)/.installed fonts
	$(BIN)/sanzi documents fonts

migrate: setup
	$(BIN)/sanzi db upgrade --no-prompt

demo: migrate
	$(BIN)/sanzi geography import
	$(BIN)/sanzi demo load
	$(BIN)/sanzi demo seed --years 2 --villages 30 --seed 1 --if-empty

run: demo
	@echo "sanzi is serving on http://$(HOST):$(PORT)  (API docs: http://$(HOST):$(PORT)/schema)"
	$(BIN)/sanzi run --host $(HOST) --port $(PORT)

# two test workers (pytest-xdist); TEST_WORKERS=0 runs everything in one process
TEST_WORKERS ?= 2

test: setup
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# benchmarks/README.md: QUICK=1 for the two-minute run; BENCH_OUT=DIR writes the results there instead
bench: setup
	$(BIN)/python -m benchmarks.run $(if $(QUICK),--quick) $(if $(BENCH_OUT),--out $(BENCH_OUT))

check: setup
	$(BIN)/sanzi db check

clean:
	rm -rf var/sanzi.db var/sanzi.db-* var/sessions
