#!/bin/sh
# Entrypoint of the postgres stand-in (postgres.Dockerfile). Does what the official image's entrypoint
# does for compose/compose.yaml: on the first start, an empty data directory gets a cluster whose
# superuser is POSTGRES_USER with POSTGRES_PASSWORD (scram-sha-256 over TCP from anywhere, trust on the
# local socket), and the database POSTGRES_DB (default: POSTGRES_USER); then postgres runs in the
# foreground as the postgres user, listening on every address. Not supported: initdb scripts, the
# POSTGRES_INITDB_* and POSTGRES_HOST_AUTH_METHOD variables.
set -eu

if [ "${1:-postgres}" != postgres ]; then
  exec "$@"
fi
if [ "$#" -gt 0 ]; then shift; fi

if [ "$(id -u)" = 0 ]; then
  mkdir -p "${PGDATA}" /var/run/postgresql
  chown postgres:postgres "${PGDATA}" /var/run/postgresql
  chmod 0700 "${PGDATA}"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" postgres "$@"
fi

if [ ! -s "${PGDATA}/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres stand-in: POSTGRES_PASSWORD is not set; the official image refuses to start too" >&2
    exit 1
  fi
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-${user}}"
  pwfile="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD}" >"${pwfile}"
  initdb --username="${user}" --pwfile="${pwfile}" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --no-instructions >/dev/null
  rm -f "${pwfile}"
  echo "listen_addresses = '*'" >>"${PGDATA}/postgresql.conf"
  echo "host all all all scram-sha-256" >>"${PGDATA}/pg_hba.conf"
  if [ "${db}" != postgres ]; then
    # A private server on the socket only, as the official entrypoint does, to create the database.
    pg_ctl -D "${PGDATA}" -o "-c listen_addresses=''" -w start >/dev/null
    psql -v ON_ERROR_STOP=1 -q -U "${user}" -d postgres -c "CREATE DATABASE \"${db}\""
    pg_ctl -D "${PGDATA}" -m fast -w stop >/dev/null
  fi
  echo "postgres stand-in: initialised ${PGDATA} (superuser ${user}, database ${db})"
fi

exec postgres -D "${PGDATA}" "$@"
