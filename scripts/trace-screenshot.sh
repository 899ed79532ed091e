#!/usr/bin/env bash
# Takes docs/trace-one-transfer.png: the trace viewer's (Jaeger UI's) page of the newest trace that holds
# spans of streambank-api, streambank-relay and streambank-worker, as left by a transfer made while
# scripts/dev.sh runs (the README's walkthrough, or `bankctl demo`). Headless chromium from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
viewer="${TRACE_VIEWER_URL:-http://127.0.0.1:16686}"

trace_id="$(curl -sf "${viewer}/api/traces?service=streambank-api&limit=200" | python3 -c '
import json, sys
want = {"streambank-api", "streambank-relay", "streambank-worker"}
traces = json.load(sys.stdin)["data"]
hits = [t for t in traces if want <= {p["serviceName"] for p in t["processes"].values()}
        and any(s["operationName"] == "http request" for s in t["spans"])]
hits.sort(key=lambda t: max(s["startTime"] for s in t["spans"]), reverse=True)
print(hits[0]["traceID"] if hits else "")')" || {
  echo "the trace viewer does not answer at ${viewer} (is scripts/dev.sh running?)" >&2
  exit 1
}
[ -n "${trace_id}" ] || {
  echo "no trace with spans of all three services yet: make a transfer first (bankctl demo)" >&2
  exit 1
}
if ! command -v chromium >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
profile="$(mktemp -d)"
trap 'rm -rf "${profile}"' EXIT
chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync "--user-data-dir=${profile}" --hide-scrollbars \
  --virtual-time-budget=15000 --window-size=1400,1000 \
  --screenshot="${PWD}/docs/trace-one-transfer.png" "${viewer}/trace/${trace_id}" 2>/dev/null
echo "docs/trace-one-transfer.png: trace ${trace_id}"
