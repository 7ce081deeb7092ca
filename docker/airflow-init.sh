#!/usr/bin/env bash
# One-shot initialisation of the production stack (service airflow-init). Every other Airflow
# service starts only after this exits 0 (depends_on: service_completed_successfully), so the
# stack refuses to start while a secret is empty or a known default.
#   1. python -m mlops.preflight: secrets (exit 3 with one line per problem and the fix)
#   2. the log folder (and logs/openlineage, the default lineage file's) is writable by this uid
#      (AIRFLOW_UID, apache/airflow #17320)
#   3. airflow db migrate: Airflow's metadata DB (database airflow), FAB tables included
#   4. the admin user from _AIRFLOW_WWW_USER_* (kept if it exists: change it in the UI or with
#      `airflow users reset-password`)
#   5. the platform's schema (database mlops) through the Airflow connection mlops_metadata,
#      and the pipeline's MinIO key (connection minio_default) can reach both buckets
set -euo pipefail
cd "${MLOPS_PROJECT_DIR:-/opt/airflow/project}"

echo "airflow-init: checking secrets"
python -m mlops.preflight

logs="${AIRFLOW_HOME:-/opt/airflow}/logs"
if ! mkdir -p "$logs" "$logs/openlineage" || ! touch "$logs/.write-test" 2>/dev/null; then
  echo "airflow-init: $logs is not writable by uid $(id -u). Fix: set AIRFLOW_UID in .env to the" \
       "owner of the folder (\`id -u\` for a bind-mounted ./logs) and run \`docker compose up\` again." >&2
  exit 3
fi
rm -f "$logs/.write-test"

echo "airflow-init: migrating Airflow's metadata database"
airflow db migrate

echo "airflow-init: admin user ${_AIRFLOW_WWW_USER_USERNAME}"
airflow users create \
  --username "${_AIRFLOW_WWW_USER_USERNAME}" \
  --password="${_AIRFLOW_WWW_USER_PASSWORD}" \
  --email "${_AIRFLOW_WWW_USER_EMAIL:-admin@example.com}" \
  --firstname Platform --lastname Admin --role Admin

echo "airflow-init: migrating the platform's metadata database and checking the buckets"
python - <<'PY'
from mlops.config import get_settings
from mlops.io.metadata import MetadataStore
from mlops.io.objects import make_s3_client

settings = get_settings()
with MetadataStore.from_settings(settings) as store:
    store.migrate()
    print(f"  metadata schema at revision {store.schema_revision()}")
client = make_s3_client(airflow_conn_id=settings.object_store.airflow_conn_id, region=settings.object_store.region)
for bucket in (settings.object_store.bucket, "airflow-logs"):
    client.head_bucket(Bucket=bucket)
    print(f"  bucket {bucket} reachable with the pipeline key")
PY
echo "airflow-init: done"
