#!/usr/bin/env bash
# The REST benchmark: POST /v1/transfers and GET /v1/accounts/{id} over 32 keep-alive connections, against
# the service layer measured in the same run, plus the per-request cost of authentication.
# Extra arguments go to api-bench (see --help). Drops and recreates the database streambank_bench_api.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/streambank/target}"
cargo build --release --locked --quiet -p streambank-bench --bin api-bench
mkdir -p bench/results
out="bench/results/api-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo
  "${CARGO_TARGET_DIR}/release/api-bench" "$@"
} | tee "$out"
echo "(saved to $out)" >&2
