#!/usr/bin/env bash
# Write a fresh .env for the production stack (docker-compose.yml) from .env.example, with a
# new random value for every secret: Fernet key, JWT and api-server secrets, admin password,
# Postgres, Redis and MinIO credentials. Every other line of .env.example is kept as it is.
#
#   scripts/make-secrets.sh            # writes .env next to .env.example; refuses to overwrite
#   scripts/make-secrets.sh --force    # replaces an existing .env (the old one goes to .env.bak)
#   scripts/make-secrets.sh OUT_FILE   # writes another file (e.g. for a second stack or a test)
#
# The file is created with mode 600. Values use only letters and digits (they are
# embedded in connection URIs), and `python -m mlops.preflight --env-file .env` accepts them.
# Note: Postgres and MinIO read their passwords only when their volumes are first created;
# README "Operations" explains how to rotate secrets on a running stack.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
force=0
out=""
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "make-secrets: unknown option $arg (try --help)" >&2; exit 2 ;;
    *) out="$arg" ;;
  esac
done
out="${out:-$root/.env}"
if [ -e "$out" ] && [ "$force" -ne 1 ]; then
  echo "make-secrets: $out exists; keeping it. Use --force to replace it (the old file goes to $out.bak)." >&2
  exit 1
fi
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi
[ -e "$out" ] && cp -p "$out" "$out.bak"

fernet_key="$("$python" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' 2>/dev/null \
  || "$python" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')"

umask 077
tmp="$(mktemp "${out}.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
FERNET_KEY="$fernet_key" "$python" - "$root/.env.example" "$tmp" <<'PY'
import os
import re
import secrets
import string
import sys

example, target = sys.argv[1], sys.argv[2]
ALPHABET = string.ascii_letters + string.digits


def token(length=40):
    """Letters and digits only: safe in URIs, JSON, shell words and command-line options."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


values = {
    "AIRFLOW__CORE__FERNET_KEY": os.environ["FERNET_KEY"],
    "AIRFLOW__API_AUTH__JWT_SECRET": token(64),
    "AIRFLOW__API__SECRET_KEY": token(64),
    "_AIRFLOW_WWW_USER_USERNAME": "admin",
    "_AIRFLOW_WWW_USER_PASSWORD": token(24),
    "POSTGRES_PASSWORD": token(),
    "AIRFLOW_DB_PASSWORD": token(),
    "PLATFORM_DB_PASSWORD": token(),
    "REDIS_PASSWORD": token(),
    "MINIO_ROOT_USER": f"root-{secrets.token_hex(6)}",
    "MINIO_ROOT_PASSWORD": token(),
    "MINIO_PIPELINE_ACCESS_KEY": f"loan-pipeline-{secrets.token_hex(6)}",
    "MINIO_PIPELINE_SECRET_KEY": token(),
}
pattern = re.compile(r"^#?\s*([A-Za-z_][A-Za-z0-9_]*)=")
written = set()
lines = []
with open(example, encoding="utf-8") as source:
    for line in source:
        match = pattern.match(line)
        name = match.group(1) if match else None
        if name in values and name not in written:
            line = f"{name}={values[name]}\n"
            written.add(name)
        lines.append(line)
missing = sorted(set(values) - written)
if missing:
    lines.append("\n# Secrets not found in .env.example\n")
    lines.extend(f"{name}={values[name]}\n" for name in missing)
with open(target, "w", encoding="utf-8") as handle:
    handle.writelines(lines)
PY
chmod 600 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "make-secrets: wrote $out with fresh secrets (mode 600). Keep it out of git; back it up with your other secrets."
