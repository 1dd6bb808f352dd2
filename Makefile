# GENRE nightly pipeline. `make nightly` sets up everything and runs one night; `make test` tests.
SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
RUN_DATE ?= 2026-11-22
CONFIG ?= configs/default.yaml

# Everything below is derived from the repo root, so nothing machine-specific is committed.
export PATH := $(VENV)/bin:$(PATH)
# genre_lib importable by every Airflow process, the triggerer's Deadline Alert callback included
export PYTHONPATH := $(ROOT)$(if $(PYTHONPATH),:$(PYTHONPATH))
export AIRFLOW_HOME := $(ROOT)/airflow_home
export AIRFLOW_CONFIG := $(ROOT)/airflow.cfg
export AIRFLOW__CORE__DAGS_FOLDER := $(ROOT)/dags
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN ?= sqlite:///$(ROOT)/airflow_home/airflow.db
# the maintenance task's `airflow db clean` (Airflow 3 hides the metadata DB from tasks otherwise)
export GENRE_AIRFLOW_DB_CONN ?= $(AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)
export AIRFLOW_CONN_SPARK_DEFAULT ?= {"conn_type": "spark", "host": "local[*]"}
export MLFLOW_TRACKING_URI ?= sqlite:///$(ROOT)/mlflow.db
export MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK := true
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYSPARK_PYTHON := $(PY)
export PYSPARK_DRIVER_PYTHON := $(PY)
export NO_PROXY := *

.PHONY: nightly test reliability airflow mlflow-ui airflow-init data bench clean-state prod-install prod-check \
	airflow-pools backfill-test ui-install ui-check serve soak

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	@touch $@

$(AIRFLOW_HOME)/.migrated: $(VENV)/.installed
	@mkdir -p $(AIRFLOW_HOME)
	airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (tail -20 $(AIRFLOW_HOME)/migrate.log; exit 1)
	$(PY) -m genre_lib.orchestration.dag_support pools
	@touch $@

airflow-init: $(AIRFLOW_HOME)/.migrated

# The pools genre_nightly's tasks run in (`spark`, `gpu`; a task of a missing pool is never
# scheduled). Slots: GENRE_SPARK_POOL_SLOTS (default 2), GENRE_GPU_POOL_SLOTS (default 1).
airflow-pools: $(AIRFLOW_HOME)/.migrated
	$(PY) -m genre_lib.orchestration.dag_support pools

data: $(VENV)/.installed
	$(PY) -m genre_lib.datasets --config $(CONFIG)

nightly: airflow-init data
	airflow dags test genre_nightly $(RUN_DATE) -c '{"config": "$(CONFIG)", "run_date": "$(RUN_DATE)"}' \
		> $(AIRFLOW_HOME)/nightly-$(RUN_DATE).log 2>&1 \
		|| (grep -E "ERROR|Error|error:" $(AIRFLOW_HOME)/nightly-$(RUN_DATE).log | tail -30; \
		    echo "genre_nightly failed: full log in $(AIRFLOW_HOME)/nightly-$(RUN_DATE).log"; exit 1)
	$(PY) -m genre_lib.orchestration.report --config $(CONFIG) --run-date $(RUN_DATE)

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

reliability: $(VENV)/.installed
	$(PY) -m pytest -q tests/reliability --run-slow

# `airflow backfill create` of three nights, run by a real scheduler (slow: ~10 minutes on 2 cores)
backfill-test: $(VENV)/.installed
	$(PY) -m pytest -q tests/test_backfill.py --run-slow

# The Airflow and MLflow UIs in headless Chromium (Debian packages; Selenium is in requirements-dev.txt):
# trigger genre_nightly from the form on a tiny profile, screenshots and checks in artifacts/ui/.
ui-install:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver)

ui-check: $(VENV)/.installed ui-install
	$(PY) bench/ui_check.py $(UI_CHECK_ARGS)

# One JWT secret for all standalone components (the committed airflow.cfg has none; components that
# each make their own refuse each other's tokens and every task fails with "Invalid auth token").
airflow: airflow-init airflow-pools
	AIRFLOW__API_AUTH__JWT_SECRET=$${AIRFLOW__API_AUTH__JWT_SECRET:-$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(32))')} \
		airflow standalone

# The read API over the last published night (genre_lib/serve): make serve PORT=8000
PORT ?= 8000
HOST ?= 127.0.0.1
serve: $(VENV)/.installed
	$(PY) -m genre_lib.serve --config $(CONFIG) --host $(HOST) --port $(PORT)

mlflow-ui: $(VENV)/.installed
	mlflow server --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port 5000

bench: $(VENV)/.installed
	$(PY) bench/encoder.py && $(PY) bench/topk.py && $(PY) bench/spark_genres.py

# NIGHTS consecutive nights through a real scheduler with injected faults (bench/soak.py; slow:
# about 3 minutes a night on 2 cores); its figures in the JSON file it prints last
NIGHTS ?= 21
soak: $(VENV)/.installed
	$(PY) bench/soak.py --nights $(NIGHTS) $(SOAK_ARGS)

# Production profile (configs/production.env): Postgres + Celery/Redis Airflow, MLflow server on
# Postgres. Needs those servers; `make nightly` above needs none.
$(VENV)/.installed-prod: $(VENV)/.installed requirements-prod.txt
	$(PY) -m pip install -q -r requirements-prod.txt
	$(PY) -m pip check
	@touch $@

prod-install: $(VENV)/.installed-prod

prod-check: $(VENV)/.installed-prod
	$(PY) bench/prod_check.py $(PROD_CHECK_ARGS)

clean-state:
	rm -rf lake airflow_home mlflow.db mlartifacts prod_state
