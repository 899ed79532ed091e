#!/usr/bin/env bash
# The ledger benchmark: service-layer transfer throughput with 8 and 32 callers against pgbench on the
# same database in the same run ((a) the store's own transfer statement, -M prepared; (b) tpcb-like).
# Prints a Markdown table of medians of 3 runs; extra arguments go to ledger-bench (see --help).
# Needs Postgres on 127.0.0.1:5432 and pgbench; drops and recreates the database streambank_bench.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/streambank/target}"
cargo build --release --locked --quiet -p streambank-bench --bin ledger-bench
mkdir -p bench/results
out="bench/results/ledger-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "Postgres: $(psql -h 127.0.0.1 -U postgres -Atc 'SHOW server_version'), synchronous_commit=$(psql -h 127.0.0.1 -U postgres -Atc 'SHOW synchronous_commit'), $(pgbench --version)"
  echo
  "${CARGO_TARGET_DIR}/release/ledger-bench" "$@"
} | tee "$out"
echo "(saved to $out)" >&2
