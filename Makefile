# Two commands for a newcomer: `make demo` (run the pipeline on the embedded default)
# and `make test` (install what the tests need, start the servers, run pytest).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_COUNT ?= 24

.PHONY: demo test venv dev-venv system-deps lint clean-data help secrets bench models eval

help:
	@echo "make demo   - set up .venv, generate sample documents, run the pipeline locally"
	@echo "make test   - set up .venv + test servers, run the whole test suite"
	@echo "make models - train the extractor's models unless the configured version exists"
	@echo "make eval   - the extractor's accuracy on held-out layout families and wordings"
	@echo "make bench  - end-to-end run seconds per document kind vs plain Tesseract, no-op rerun, RSS (benchmarks/)"
	@echo "make secrets - a fresh .env with random secrets for Docker Compose"
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

AIRFLOW_ENV := AIRFLOW_HOME=$(CURDIR)/airflow_home AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False

models: venv
	@$(PY) -m mlops train-extractor --if-missing

eval: models
	@$(PY) -m mlops evaluate-extractor

demo: models
	@test -n "$$(ls -A data/landing 2>/dev/null)" || $(PY) -m mlops sample-data --count $(DEMO_COUNT) --seed 7
	@mkdir -p logs
	@echo "running the Airflow DAG in-process (airflow dags test); log: logs/demo-dag-test.log"
	@$(AIRFLOW_ENV) $(VENV)/bin/airflow db migrate > logs/demo-airflow-db.log 2>&1
	@$(AIRFLOW_ENV) $(VENV)/bin/airflow dags test document_processing_pipeline > logs/demo-dag-test.log 2>&1 \
		|| grep -q "verdict: gate.fail_run_on)" logs/demo-dag-test.log \
		|| { tail -n 40 logs/demo-dag-test.log; exit 1; }
	@$(PY) -m mlops summary
	@! grep -q "verdict: gate.fail_run_on)" logs/demo-dag-test.log \
		|| echo "the pipeline ran to its report; the Airflow run failed at quality_gate on the verdict above (gate.fail_run_on)"

secrets:
	@bash scripts/make-secrets.sh

BENCH_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
# e.g. BENCH_ARGS="--rss-sizes 1000,10000 --noop-documents 10000 --lookup-hashes 1000000" (benchmarks/README.md)
BENCH_ARGS ?=

bench: venv models
	$(PY) benchmarks/run_benchmark.py --workers $(BENCH_WORKERS) $(BENCH_ARGS)

test: dev-venv models
	@admin_url=$$(bash scripts/test-services.sh) && \
	MLOPS_TEST_POSTGRES_ADMIN_URL=$$admin_url $(PY) -m pytest $(PYTEST_ARGS)

lint: dev-venv
	$(VENV)/bin/ruff check mlops dags tests benchmarks

clean-data:
	rm -rf data/landing data/raw data/quarantine data/runs data/reports data/metadata.db* airflow_home
