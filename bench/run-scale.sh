#!/usr/bin/env bash
# Issue 23's capacity figures (docs/scaling.md): the relay over 1, 2 and 4 partitions on a lone Redis and
# on a private Redis Cluster (started here with scripts/engines.sh), with and without WAIT 1. Extra
# arguments go to scale-bench (see --help). Drops and recreates the database streambank_bench_scale.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/streambank/target}"
scripts/engines.sh redis-cluster start
cargo build --release --locked --quiet -p streambank-bench --bin scale-bench
mkdir -p bench/results
out="bench/results/scale-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo
  "${CARGO_TARGET_DIR}/release/scale-bench" "$@"
} | tee "$out"
echo "(saved to $out)" >&2
