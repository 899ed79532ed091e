#!/usr/bin/env bash
# REST, gRPC and the HTTP/JSON gateway side by side: GET /v1/accounts/{id} against AccountService/GetAccount
# and POST /v1/transfers against TransferService/CreateTransfer, 32 concurrent callers, in one run; throughput,
# p50 and p99 latency, CPU per call, and the bytes each call puts on the wire. Writes the chart
# docs/benchmarks/transports.svg (--chart to change it).
# Extra arguments go to transport-bench (see --help). Drops and recreates the database
# streambank_bench_transports.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/streambank/target}"
cargo build --release --locked --quiet -p streambank-bench --bin transport-bench
mkdir -p bench/results
out="bench/results/transports-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo
  "${CARGO_TARGET_DIR}/release/transport-bench" "$@"
} | tee "$out"
echo "(saved to $out)" >&2
