#!/bin/sh
# One-shot job (service minio-init, image minio/mc): creates the buckets and the pipeline's
# least-privilege access key. Idempotent: safe on every `docker compose up`.
#   loan-documents  documents, quarantine, run datasets, reports, the DVC remote
#   airflow-logs    Airflow's remote task logs
# The key MINIO_PIPELINE_ACCESS_KEY gets read/write/list on those two buckets and nothing else
# (no admin API, no other bucket); the root credentials are used only here.
set -eu
: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set: run scripts/make-secrets.sh}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set: run scripts/make-secrets.sh}"
: "${MINIO_PIPELINE_ACCESS_KEY:?MINIO_PIPELINE_ACCESS_KEY is not set: run scripts/make-secrets.sh}"
: "${MINIO_PIPELINE_SECRET_KEY:?MINIO_PIPELINE_SECRET_KEY is not set: run scripts/make-secrets.sh}"
endpoint="${MINIO_ENDPOINT:-http://minio:9000}"
policy_name="loan-pipeline"
policy_file="$(mktemp)"

tries=0
until mc alias set platform "$endpoint" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 30 ]; then echo "minio-init: MinIO at $endpoint does not answer" >&2; exit 1; fi
  sleep 2
done

for bucket in loan-documents airflow-logs; do
  mc mb --ignore-existing "platform/$bucket"
  mc anonymous set none "platform/$bucket" >/dev/null
done

cat > "$policy_file" <<'JSON'
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::loan-documents", "arn:aws:s3:::airflow-logs"]
    },
    {
      "Effect": "Allow",
      "Action": [
        "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
        "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"
      ],
      "Resource": ["arn:aws:s3:::loan-documents/*", "arn:aws:s3:::airflow-logs/*"]
    }
  ]
}
JSON
mc admin policy create platform "$policy_name" "$policy_file"
mc admin user add platform "$MINIO_PIPELINE_ACCESS_KEY" "$MINIO_PIPELINE_SECRET_KEY"
if ! out="$(mc admin policy attach platform "$policy_name" --user "$MINIO_PIPELINE_ACCESS_KEY" 2>&1)"; then
  case "$out" in
    *already*) ;;  # attached by an earlier run
    *) echo "$out" >&2; exit 1 ;;
  esac
fi
rm -f "$policy_file"
echo "minio-init: buckets loan-documents and airflow-logs ready; key $MINIO_PIPELINE_ACCESS_KEY has policy $policy_name"
