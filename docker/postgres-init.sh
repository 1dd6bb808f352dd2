#!/usr/bin/env bash
# Mounted into the postgres service's /docker-entrypoint-initdb.d (docker/compose.yaml), so it runs
# once, when the data volume is empty: one role and one database for Airflow's metadata, another
# role and database for MLflow's tracking store; neither role can open the other's database.
# Names and passwords come from the postgres service's environment, never from this file; psql
# variables (:"name", :'literal') quote them. Runs as an executable or sourced by the entrypoint.
set -e
: "${AIRFLOW_DB:?}" "${AIRFLOW_DB_USER:?}" "${AIRFLOW_DB_PASSWORD:?}"
: "${MLFLOW_DB:?}" "${MLFLOW_DB_USER:?}" "${MLFLOW_DB_PASSWORD:?}"
if [ "$AIRFLOW_DB" = "$MLFLOW_DB" ]; then
    echo "postgres-init: AIRFLOW_DB and MLFLOW_DB must differ (both are $AIRFLOW_DB)" >&2
    exit 1
fi

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v airflow_db="$AIRFLOW_DB" -v airflow_user="$AIRFLOW_DB_USER" -v airflow_password="$AIRFLOW_DB_PASSWORD" \
    -v mlflow_db="$MLFLOW_DB" -v mlflow_user="$MLFLOW_DB_USER" -v mlflow_password="$MLFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE :"airflow_user" LOGIN PASSWORD :'airflow_password';
CREATE DATABASE :"airflow_db" OWNER :"airflow_user";
REVOKE ALL ON DATABASE :"airflow_db" FROM PUBLIC;
CREATE ROLE :"mlflow_user" LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE :"mlflow_db" OWNER :"mlflow_user";
REVOKE ALL ON DATABASE :"mlflow_db" FROM PUBLIC;
SQL
echo "postgres-init: created databases $AIRFLOW_DB (owner $AIRFLOW_DB_USER) and $MLFLOW_DB (owner $MLFLOW_DB_USER)"
