#!/usr/bin/env bash
# Runs the README's native walkthrough exactly as written (its two sh blocks under "The walkthrough
# (native)"), against a system that scripts/dev.sh brought up, and writes the transcript (each line as
# it is read, then what it printed) to docs/walkthrough.md. Any failing command stops it: the block runs
# under bash -euo pipefail.
set -euo pipefail
cd "$(dirname "$0")/.."

curl -sf localhost:8080/readyz >/dev/null || {
  echo "the API does not answer on localhost:8080: start scripts/dev.sh first" >&2
  exit 1
}

# The sh blocks between the walkthrough's heading and the next heading.
blocks="$(awk '
  /^### The walkthrough \(native\)/ { on = 1; next }
  on && /^#/ && !inblock { exit }
  on && /^```sh$/ { inblock = 1; n++; next }
  on && /^```$/ && inblock { inblock = 0; next }
  on && inblock { print }
' README.md)"
[ -n "${blocks}" ] || { echo "no walkthrough block found in README.md" >&2; exit 1; }
# WALKTHROUGH_PROFILE=debug: `cargo run` without --release (a stack started from debug binaries).
note=""
if [ "${WALKTHROUGH_PROFILE:-release}" = debug ]; then
  blocks="${blocks//cargo run --release/cargo run}"
  # shellcheck disable=SC2016 # backquotes for Markdown, not command substitution
  note=' (with `WALKTHROUGH_PROFILE=debug`: `cargo run` without `--release`, against debug binaries)'
fi

out="docs/walkthrough.md"
{
  echo "# The README walkthrough, run as written"
  echo
  echo "Recorded by \`scripts/walkthrough.sh\`${note} on $(date -u +%Y-%m-%d): the README's"
  echo "native walkthrough blocks run under \`bash -euo pipefail\` (a failing command stops the run), each"
  echo "line echoed as it is read, followed by what it printed. Tokens are shortened."
  echo
  echo '```text'
} >"${out}"
set +e
bash -euo pipefail -v -c "${blocks}" 2>&1 |
  sed -E 's/(v4\.local\.|ey)[A-Za-z0-9_.-]{20,}/\1…/g' | tee -a "${out}"
status=${PIPESTATUS[0]}
set -e
echo '```' >>"${out}"
if [ "${status}" -ne 0 ]; then
  echo "the walkthrough failed (exit ${status}); transcript in ${out}" >&2
  exit "${status}"
fi
echo "walkthrough ok; transcript in ${out}"
