# Two commands for a newcomer: `make demo` (run the pipeline on the embedded default)
# and `make test` (install what the tests need, start the servers, run pytest).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_COUNT ?= 24

.PHONY: demo test venv dev-venv system-deps lint clean-data help

help:
	@echo "make demo   - set up .venv, generate sample documents, run the pipeline locally"
	@echo "make test   - set up .venv + test servers, run the whole test suite"
	@echo "make lint   - ruff"

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt -c constraints.txt
	touch $@

venv: system-deps $(VENV)/.installed
dev-venv: system-deps $(VENV)/.dev-installed

system-deps:
	@bash scripts/system-deps.sh

demo: venv
	@test -n "$$(ls -A data/landing 2>/dev/null)" || $(PY) -m mlops sample-data --count $(DEMO_COUNT) --seed 7
	$(PY) -m mlops run

test: dev-venv
	@admin_url=$$(bash scripts/test-services.sh) && \
	MLOPS_TEST_POSTGRES_ADMIN_URL=$$admin_url $(PY) -m pytest $(PYTEST_ARGS)

lint: dev-venv
	$(VENV)/bin/ruff check mlops dags tests benchmarks

clean-data:
	rm -rf data/landing data/raw data/quarantine data/runs data/reports data/metadata.db*
