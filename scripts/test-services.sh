#!/usr/bin/env bash
# Make sure the servers the tests use answer on 127.0.0.1: PostgreSQL (5432) and Redis (6379),
# and that docker-compose (the static compose check) and chromium (browser checks) are installed.
# The S3 server (SeaweedFS) is started by the test fixtures themselves.
# Prints the admin URL the Postgres tests should use.
set -euo pipefail
sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

# Debian's docker-compose validates docker-compose.yml without a Docker engine (static test);
# Debian's chromium is the browser Playwright drives in the report's browser checks.
tools=()
command -v docker-compose >/dev/null || tools+=(docker-compose)
command -v chromium >/dev/null || tools+=(chromium)
if [ ${#tools[@]} -gt 0 ]; then
  echo "installing ${tools[*]} (compose check, browser checks)" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${tools[@]}" >&2
fi

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! pg_ready; then
  if ! command -v pg_ctlcluster >/dev/null || [ ! -d /etc/postgresql ]; then
    echo "installing PostgreSQL" >&2
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends postgresql >&2
  fi
  echo "starting PostgreSQL" >&2
  $sudo_cmd pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start >&2 || true
  for _ in $(seq 30); do pg_ready && break; sleep 1; done
  pg_ready || { echo "PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }
fi
admin_url="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
if ! psql "postgresql://postgres@127.0.0.1:5432/postgres" -Atqc 'select 1' >/dev/null 2>&1; then
  # A stock Debian install asks for a password on TCP: give the local superuser a test one.
  $sudo_cmd su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >&2
  admin_url="postgresql+psycopg2://postgres:postgres@127.0.0.1:5432/postgres"
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if ! command -v redis-server >/dev/null; then
    echo "installing Redis" >&2
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends redis-server >&2
  fi
  echo "starting Redis" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2
fi
echo "$admin_url"
