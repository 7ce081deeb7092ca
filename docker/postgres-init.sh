#!/usr/bin/env bash
# Runs once, when the postgres volume is first initialised (/docker-entrypoint-initdb.d):
# creates Airflow's metadata database and the platform's metadata database, each owned by its
# own login role, so neither component can read or change the other's tables.
#   airflow / AIRFLOW_DB_PASSWORD  -> database airflow   (Airflow's own metadata)
#   mlops   / PLATFORM_DB_PASSWORD -> database mlops     (documents, runs, extractions, audit log)
# To change a password later: README "Operations" (ALTER ROLE ... PASSWORD ...).
set -euo pipefail
: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is not set: run scripts/make-secrets.sh}"
: "${PLATFORM_DB_PASSWORD:?PLATFORM_DB_PASSWORD is not set: run scripts/make-secrets.sh}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-postgres}" \
  -v airflow_password="$AIRFLOW_DB_PASSWORD" -v mlops_password="$PLATFORM_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
CREATE ROLE mlops LOGIN PASSWORD :'mlops_password';
CREATE DATABASE mlops OWNER mlops;
REVOKE ALL ON DATABASE mlops FROM PUBLIC;
SQL
echo "postgres-init: created databases airflow and mlops with their own roles"
