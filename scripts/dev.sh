#!/usr/bin/env bash
# Brings the whole system up natively on this machine: checks or starts Postgres and Redis, starts an SMTP
# catcher with a web UI (maildev: SMTP 1025, UI and API 1080), runs the migrations, builds and starts
# a trace viewer (Jaeger UI and query API on 16686, OTLP/gRPC on 4317), streambank-api,
# streambank-relay and streambank-worker (exporting their spans to the viewer), prints the URLs, and
# stops everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/streambank/target}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/streambank}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export SMTP_URL="${SMTP_URL:-smtp://127.0.0.1:1025}"
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://localhost:8080}"
export RUST_LOG="${RUST_LOG:-info}"
# Every listener on loopback unless told otherwise (BIND_HOST=0.0.0.0 scripts/dev.sh): the development
# token key is public, so nothing here should be reachable from another machine by default.
host="${BIND_HOST:-127.0.0.1}"
export HTTP_ADDR="${HTTP_ADDR:-${host}:8080}"
export GATEWAY_ADDR="${GATEWAY_ADDR:-${host}:8081}"
export GRPC_ADDR="${GRPC_ADDR:-${host}:9090}"
export METRICS_ADDR="${METRICS_ADDR:-${host}:9100}"
# The trace viewer: Jaeger's UI and query API, and the OTLP/gRPC collector the three services export to.
export TRACE_UI_ADDR="${TRACE_UI_ADDR:-${host}:16686}"
export OTLP_GRPC_ADDR="${OTLP_GRPC_ADDR:-127.0.0.1:4317}"
export OTEL_EXPORTER_OTLP_ENDPOINT="${OTEL_EXPORTER_OTLP_ENDPOINT:-http://${OTLP_GRPC_ADDR}}"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)" main start
fi
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  echo "starting Redis (AOF on)"
  mkdir -p /var/lib/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --appendonly yes --dir /var/lib/redis
fi
if ! curl -sf http://127.0.0.1:1080/email >/dev/null 2>&1; then
  command -v maildev >/dev/null || npm install -g maildev@2.2.1
  maildev --smtp 1025 --web 1080 --ip 127.0.0.1 >/tmp/streambank-maildev.log 2>&1 &
  pids+=("$!")
fi

# The trace viewer's build compiles OpenTelemetry's protos with protoc (Debian: protobuf-compiler).
if ! command -v protoc >/dev/null; then
  echo "installing protoc (protobuf-compiler), which the trace viewer's build needs"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
fi

if [ ! -x "${CARGO_TARGET_DIR}/release/streambank-api" ]; then
  echo "building the release binaries into ${CARGO_TARGET_DIR}: the first build takes several minutes"
  echo "(10 to 20 on two cores); later runs rebuild only what changed."
fi
cargo build --release --locked -p bankctl -p streambank-api -p streambank-relay -p streambank-worker \
  -p streambank-trace-viewer
bin="${CARGO_TARGET_DIR}/release"
"$bin/bankctl" migrate

"$bin/streambank-trace-viewer" & pids+=("$!")

"$bin/streambank-api" & pids+=("$!")
HEALTH_ADDR="${host}:9101" "$bin/streambank-relay" & pids+=("$!")
HEALTH_ADDR="${host}:9102" "$bin/streambank-worker" & pids+=("$!")

cat <<INFO

StreamBank is up:
  REST API      http://localhost:8080        Swagger UI http://localhost:8080/swagger-ui/
  gateway       http://localhost:8081        Swagger UI http://localhost:8081/swagger/
  gRPC          localhost:9090               grpcurl -plaintext localhost:9090 list
  api metrics   http://localhost:9100/metrics
  relay health  http://localhost:9101/readyz
  worker health http://localhost:9102/readyz
  mail (maildev) http://localhost:1080
  traces (Jaeger UI) http://localhost:16686   spans arrive over OTLP on ${OTLP_GRPC_ADDR}
  demo          ${bin}/bankctl demo
  streams       redis-cli XRANGE bank:events:transfers - +
Ctrl-C stops everything.
INFO
wait -n "${pids[@]}"
