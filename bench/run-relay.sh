#!/usr/bin/env bash
# The relay benchmark: drain of a 200,000-row outbox backlog against redis-benchmark XADD -P 16 on the
# same Redis, peak RSS, and commit-to-XADD latency at 1,000 transfers/s with a running relay.
# Extra arguments go to relay-bench (see --help). Drops and recreates streambank_bench_relay.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/streambank/target}"
cargo build --release --locked --quiet -p streambank-bench --bin relay-bench
mkdir -p bench/results
out="bench/results/relay-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Redis $(redis-server --version | awk '{print $3}')"
  echo
  "${CARGO_TARGET_DIR}/release/relay-bench" "$@"
} | tee "$out"
echo "(saved to $out)" >&2
