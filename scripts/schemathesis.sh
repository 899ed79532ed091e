#!/usr/bin/env bash
# A short, bounded schemathesis run against both OpenAPI documents of a real streambank-api:
# REST (/openapi.json on HTTP_ADDR) and the gateway (/openapi.json on GATEWAY_ADDR), with a verified
# customer's token for the authenticated routes. Every check schemathesis has (`--checks all`):
# server errors, conformance of statuses, content types, headers and schemas, valid data accepted
# and invalid data refused, authentication not ignored, 405 with `Allow` for undocumented methods,
# missing required headers; the stateful ones (use_after_free, ensure_resource_availability,
# object_level_authorization) have nothing to act on in these phases. Where a request valid by the
# documents is refused by a rule no schema can state, scripts/schemathesis.toml says which and why.
# DELETE (log out) is left out: it would revoke the token the run uses.
#
# Usage: scripts/schemathesis.sh [max examples per operation, default 25]
# schemathesis comes from PyPI, pinned, installed once into ${SCHEMATHESIS_VENV}. Postgres and Redis
# must be up (as for the tests). Uses the scratch database streambank_schemathesis.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

MAX_EXAMPLES="${1:-25}"
SCHEMATHESIS="schemathesis==4.32.5"
SCHEMATHESIS_VENV="${SCHEMATHESIS_VENV:-${HOME}/.cache/streambank/schemathesis-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/streambank/target}"
SERVER="${PG_SERVER:-postgres://postgres@127.0.0.1:5432}"
DB_NAME=streambank_schemathesis
HTTP_PORT=18580
GATEWAY_PORT=18581
GRPC_PORT=19590
METRICS_PORT=19500

say() { printf '\n==> %s\n' "$*"; }

if ! "${SCHEMATHESIS_VENV}/bin/st" --version 2>/dev/null | grep -q "${SCHEMATHESIS#*==}"; then
  say "installing ${SCHEMATHESIS} into ${SCHEMATHESIS_VENV}"
  python3 -m venv "${SCHEMATHESIS_VENV}"
  "${SCHEMATHESIS_VENV}/bin/pip" install --quiet --disable-pip-version-check "${SCHEMATHESIS}"
fi

say "streambank-api on a fresh ${DB_NAME}"
cargo build --locked --quiet -p bankctl -p streambank-api
bin="${CARGO_TARGET_DIR}/debug"
psql "${SERVER}/postgres" -qc "DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)" >/dev/null
export DATABASE_URL="${SERVER}/${DB_NAME}"
"${bin}/bankctl" migrate
HTTP_ADDR="127.0.0.1:${HTTP_PORT}" GATEWAY_ADDR="127.0.0.1:${GATEWAY_PORT}" \
  GRPC_ADDR="127.0.0.1:${GRPC_PORT}" METRICS_ADDR="127.0.0.1:${METRICS_PORT}" \
  AUTH_RATE_LIMIT_PER_MINUTE=100000 RUST_LOG=warn "${bin}/streambank-api" >/tmp/streambank-schemathesis-api.log 2>&1 &
api_pid=$!
trap 'kill -TERM "${api_pid}" 2>/dev/null || true; wait "${api_pid}" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:${HTTP_PORT}/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

# A verified customer with a USD account, and its token.
curl -sf "http://127.0.0.1:${HTTP_PORT}/v1/users" -H 'content-type: application/json' \
  -d '{"username":"schemathesis","full_name":"Schema Thesis","email":"st@example.com","password":"correct horse battery"}' >/dev/null
psql "${DATABASE_URL}" -qc "UPDATE users SET email_verified_at = now() WHERE username = 'schemathesis'"
token="$(curl -sf "http://127.0.0.1:${HTTP_PORT}/v1/sessions" -H 'content-type: application/json' \
  -d '{"username":"schemathesis","password":"correct horse battery"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
curl -sf "http://127.0.0.1:${HTTP_PORT}/v1/accounts" -H "authorization: Bearer ${token}" \
  -H 'content-type: application/json' -d '{"currency":"USD"}' >/dev/null

status=0
for listener in "REST ${HTTP_PORT}" "gateway ${GATEWAY_PORT}"; do
  read -r name port <<<"${listener}"
  say "schemathesis against the ${name} document (${MAX_EXAMPLES} examples per operation)"
  "${SCHEMATHESIS_VENV}/bin/st" --config-file scripts/schemathesis.toml \
    run "http://127.0.0.1:${port}/openapi.json" \
    --url "http://127.0.0.1:${port}" \
    -H "Authorization: Bearer ${token}" \
    --checks all \
    --phases examples,coverage,fuzzing --exclude-method DELETE \
    --max-examples "${MAX_EXAMPLES}" --seed 22 --request-timeout 10 || status=1
done
exit "${status}"
