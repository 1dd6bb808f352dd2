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
export AIRFLOW_HOME := $(ROOT)/airflow_home
export AIRFLOW_CONFIG := $(ROOT)/airflow.cfg
export AIRFLOW__CORE__DAGS_FOLDER := $(ROOT)/dags
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN ?= sqlite:///$(ROOT)/airflow_home/airflow.db
export AIRFLOW_CONN_SPARK_DEFAULT ?= {"conn_type": "spark", "host": "local[*]"}
export MLFLOW_TRACKING_URI ?= sqlite:///$(ROOT)/mlflow.db
export MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK := true
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYSPARK_PYTHON := $(PY)
export PYSPARK_DRIVER_PYTHON := $(PY)
export NO_PROXY := *

.PHONY: nightly test reliability airflow mlflow-ui airflow-init data bench clean-state prod-install prod-check

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	@touch $@

$(AIRFLOW_HOME)/.migrated: $(VENV)/.installed
	@mkdir -p $(AIRFLOW_HOME)
	airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (tail -20 $(AIRFLOW_HOME)/migrate.log; exit 1)
	@touch $@

airflow-init: $(AIRFLOW_HOME)/.migrated

data: $(VENV)/.installed
	$(PY) -m genre_lib.datasets --config $(CONFIG)

nightly: airflow-init data
	airflow dags test genre_nightly $(RUN_DATE) -c '{"config": "$(CONFIG)", "run_date": "$(RUN_DATE)"}' \
		> $(AIRFLOW_HOME)/nightly-$(RUN_DATE).log 2>&1 \
		|| (grep -E "ERROR|Error|error:" $(AIRFLOW_HOME)/nightly-$(RUN_DATE).log | tail -30; \
		    echo "genre_nightly failed: full log in $(AIRFLOW_HOME)/nightly-$(RUN_DATE).log"; exit 1)
	$(PY) -m genre_lib.report --config $(CONFIG) --run-date $(RUN_DATE)

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

reliability: $(VENV)/.installed
	$(PY) -m pytest -q tests/reliability --run-slow

airflow: airflow-init
	airflow standalone

mlflow-ui: $(VENV)/.installed
	mlflow server --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port 5000

bench: $(VENV)/.installed
	$(PY) bench/encoder.py && $(PY) bench/topk.py && $(PY) bench/spark_genres.py

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
