#!/usr/bin/env bash
# The gateway's JSON transcoding: gateway::response::success on the protobuf answers of GetAccount and
# CreateTransfer, by the direct path (gateway::json) against the reference (DynamicMessage, then
# serde_json::Value), interleaved on one thread. Needs no services.
# Extra arguments go to gateway-json-bench (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/streambank/target}"
cargo build --release --locked --quiet -p streambank-bench --bin gateway-json-bench
mkdir -p bench/results
out="bench/results/gateway-json-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo
  "${CARGO_TARGET_DIR}/release/gateway-json-bench" "$@"
} | tee "$out"
echo "(saved to $out)" >&2
