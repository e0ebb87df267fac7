#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 with a database `test` that the
# tests may empty, then print the SQLAlchemy URL to reach it (messages go to stderr).
# Works with no cluster (installs and creates one when run as root), several versions under
# /etc/postgresql (starts the newest), and trust, md5 or scram authentication (creates a
# password role `anfu_test` through the postgres superuser's local socket when needed).
set -euo pipefail
HOST=127.0.0.1 PORT=5432 DB=test
say() { echo "postgres-for-tests: $*" >&2; }
can() { psql "$1" -qtAc "SELECT 1" >/dev/null 2>&1; }

if ! command -v pg_isready >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    say "installing PostgreSQL (Debian package postgresql)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  else
    say "PostgreSQL is missing: install the Debian package postgresql (or set ANFU_PG_URL)"; exit 1
  fi
fi

if ! pg_isready -h "$HOST" -p "$PORT" -q; then
  versions=$(ls /etc/postgresql 2>/dev/null | sort -V || true)
  if [ -z "$versions" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    say "no cluster: creating PostgreSQL $version main on port $PORT"
    pg_createcluster --port "$PORT" "$version" main >&2
    versions=$version
  fi
  started=""
  for version in $(echo "$versions" | tr ' ' '\n' | sort -Vr); do
    [ -d "/etc/postgresql/$version/main" ] || continue
    port=$(sed -n 's/^port *= *\([0-9]*\).*/\1/p' "/etc/postgresql/$version/main/postgresql.conf")
    [ "${port:-5432}" = "$PORT" ] || continue
    say "starting PostgreSQL $version main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
    started=$version; break
  done
  [ -n "$started" ] || { say "no cluster under /etc/postgresql listens on port $PORT"; exit 1; }
  for _ in $(seq 1 30); do pg_isready -h "$HOST" -p "$PORT" -q && break; sleep 1; done
  pg_isready -h "$HOST" -p "$PORT" -q || { say "PostgreSQL $started did not start"; exit 1; }
fi

trust="postgresql://postgres@$HOST:$PORT/postgres"
if can "$trust"; then
  if [ -z "$(psql "$trust" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
    say "creating database $DB"; psql "$trust" -qc "CREATE DATABASE $DB" >&2
  fi
  echo "postgresql+psycopg://postgres@$HOST:$PORT/$DB"; exit 0
fi

# Password authentication on TCP: a test role made through the superuser's local socket.
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
as_postgres psql -qc "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anfu_test')
  THEN CREATE ROLE anfu_test LOGIN SUPERUSER PASSWORD 'anfu_test'; END IF; END \$\$" >&2
if [ -z "$(as_postgres psql -qtAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
  as_postgres psql -qc "CREATE DATABASE $DB OWNER anfu_test" >&2
fi
url="postgresql://anfu_test:anfu_test@$HOST:$PORT/$DB"
can "$url" || { say "cannot log in as anfu_test on $HOST:$PORT (check pg_hba.conf)"; exit 1; }
echo "postgresql+psycopg://anfu_test:anfu_test@$HOST:$PORT/$DB"
