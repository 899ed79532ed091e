#!/usr/bin/env bash
# The drain-after-outage benchmark: one worker process draining 20,000 transfer events into notification
# rows (unread, and pending with a dead consumer) against the same statements sent straight to Postgres,
# and 1,000 events into 2,000 emails against maildev's own accept rate. Needs maildev on 1025.
# Extra arguments go to drain-bench (see --help). Drops and recreates streambank_bench_drain.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/streambank/target}"
cargo build --release --locked --quiet -p streambank-bench --bin drain-bench
mkdir -p bench/results
out="bench/results/drain-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Redis $(redis-server --version | awk '{print $3}')"
  echo
  "${CARGO_TARGET_DIR}/release/drain-bench" "$@"
} | tee "$out"
echo "(saved to $out)" >&2
