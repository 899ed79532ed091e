#!/usr/bin/env bash
# Runs compose/compose.yaml for real, offline, with podman-compose, then drives the README's compose
# walkthrough against it and checks every answer; tears everything down at the end.
#
#   1. podman, buildah, runc, debootstrap (apt) and podman-compose (PyPI, pinned, in a venv) when
#      missing; the containers.conf this host needs (scripts/lib/image.sh).
#   2. The StreamBank image the compose file names (streambank:dev): release binaries built on the host
#      and Dockerfile.runtime, as scripts/build-image.sh does. The compose file's own build (the
#      multi-stage Dockerfile) would compile for 20+ minutes on two cores; `scripts/build-image.sh --full`
#      is the way to check that one.
#   3. Local stand-ins for the four third-party images, which no registry here serves:
#      compose/standins/*.Dockerfile (Postgres 15 and Redis 7 from Debian's packages; a MailHog and a
#      Jaeger that answer the parts of their HTTP APIs used below).
#   4. podman-compose -p streambank-check -f compose/compose.yaml -f compose/standins.yaml up -d.
#      The override swaps those four images and moves every published port to 40000 + port (16686 to
#      56686): nothing else. podman 4.3 cannot honour depends_on here: it runs healthchecks only from
#      systemd timers (none here), so podman-compose skips `service_healthy`; and the `--requires` links
#      podman-compose adds make `podman start api` try to start the exited one-shot `migrate` again
#      ("depends on container ... not found in input list"). So the script does what Compose would:
#      it reads the start order from the file's depends_on, starts each stage with `up -d --no-deps`,
#      and checks each awaited condition itself (healthchecks run by hand with `podman healthcheck
#      run`, migrate's exit code, running state).
#   5. The walkthrough of README.md ("With containers"), with the ports moved: register, the
#      verification mail in the catcher and its link, a banker made with `bankctl` inside the api
#      container, log in, open accounts, deposit, transfer, the balances, the event in the Redis
#      stream, the banker's notification, the gateway, the health and metrics ports, and one trace
#      that holds spans of the api, the relay and the worker. Any unexpected answer stops the run.
#   6. podman-compose down -v: containers, the network and the volumes go. The images stay (a second
#      run reuses their layers).
#
# Usage: scripts/compose-run.sh [--keep] [--skip-build] | --down
#   --keep        leave the stack running at the end, also after a failure (then `scripts/compose-run.sh --down`)
#   --skip-build  use the streambank:dev image already in podman's store (no cargo build)
#   --down        only tear down a stack left by --keep or by an interrupted run
# Environment: CARGO_TARGET_DIR (default ~/.cache/streambank/target), as scripts/build-image.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

# step, die, cleanup; ensure_podman, ensure_base_image, build_binaries, build_image.
# shellcheck source=scripts/lib/image.sh
source "${ROOT}/scripts/lib/image.sh"

PROJECT=streambank-check
PODMAN_COMPOSE_VERSION=1.6.0
VENV="${CACHE}/compose-venv"
STANDINS=(postgres:15 redis:7 mailhog:1 jaeger:1)
# Host ports published by compose/standins.yaml (all on 127.0.0.1).
API=http://127.0.0.1:48080
GATEWAY=http://127.0.0.1:48081
MAIL=http://127.0.0.1:48025
TRACES=http://127.0.0.1:56686
HOST_PORTS=(41025 48025 44317 56686 48080 48081 49090 49100 49101 49102)
# The base URL compose/.env.example gives the worker for the links it mails (the README's port 8080).
MAILED_BASE=http://localhost:8080

KEEP=0
SKIP_BUILD=0
DOWN_ONLY=0
for arg in "$@"; do
  case "${arg}" in
    --keep) KEEP=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    --down) DOWN_ONLY=1 ;;
    *) echo "usage: $0 [--keep] [--skip-build] [--down]" >&2; exit 2 ;;
  esac
done

dc() { "${VENV}/bin/podman-compose" -p "${PROJECT}" -f compose/compose.yaml -f compose/standins.yaml "$@"; }

# The container of a service in this project (podman-compose labels them as Compose does).
container_of() {
  podman ps -a --filter "label=com.docker.compose.project=${PROJECT}" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n 1
}

teardown() {
  [[ -x "${VENV}/bin/podman-compose" ]] || return 0
  if podman ps -a --filter "label=com.docker.compose.project=${PROJECT}" --format '{{.Names}}' | grep -q . ||
    podman volume ls --filter "label=com.docker.compose.project=${PROJECT}" --format '{{.Name}}' | grep -q .; then
    step "podman-compose down -v (project ${PROJECT})"
    if ! dc down -v -t 10 </dev/null >"${RUN_DIR}/down.log" 2>&1; then
      tail -n 20 "${RUN_DIR}/down.log"
      # By the names podman-compose gave them; a container that others require goes on a later pass.
      local c v
      for _ in 1 2 3; do
        for c in $(podman ps -a --filter "label=com.docker.compose.project=${PROJECT}" --format '{{.Names}}'); do
          podman rm -f -t 10 "${c}" >/dev/null 2>&1 || true
        done
      done
      for v in $(podman volume ls --filter "label=com.docker.compose.project=${PROJECT}" --format '{{.Name}}'); do
        podman volume rm -f "${v}" >/dev/null || true
      done
    fi
  fi
  # podman-compose 1.6 leaves the project's network behind.
  if podman network exists "${PROJECT}_default"; then podman network rm -f "${PROJECT}_default" >/dev/null; fi
  local left
  left="$(podman ps -a --filter "label=com.docker.compose.project=${PROJECT}" --format '{{.Names}}')"
  left+="$(podman volume ls --filter "label=com.docker.compose.project=${PROJECT}" --format '{{.Name}}')"
  [[ -z "${left}" ]] || { echo "left behind: ${left}" >&2; return 1; }
  echo "no container, volume or network of ${PROJECT} is left"
}

on_exit() {
  local status="${EXIT_STATUS:-1}"
  if ((status != 0)) && [[ -n "${RUN_DIR:-}" ]]; then
    echo "compose-run: FAILED (exit ${status}); logs of the services:" >&2
    for s in postgres redis mailhog jaeger migrate api relay worker; do
      local c
      c="$(container_of "${s}" 2>/dev/null || true)"
      [[ -n "${c}" ]] || continue
      echo "--- ${s} (${c}), last lines" >&2
      podman logs --tail 15 "${c}" >&2 2>&1 || true
    done
  fi
  if ((KEEP)); then
    echo "the stack is still running (--keep); stop it with: $0 --down"
  else
    teardown || true
  fi
}

# --- 1. tools -------------------------------------------------------------------------------------------
ensure_compose_tools() {
  ensure_podman
  local missing=() tool
  for tool in curl jq python3; do command -v "${tool}" >/dev/null || missing+=("${tool}"); done
  if ((${#missing[@]})); then
    step "installing ${missing[*]} (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl jq python3 python3-venv >/dev/null
  fi
  if [[ "$("${VENV}/bin/podman-compose" --version 2>/dev/null | head -n 1)" != *" ${PODMAN_COMPOSE_VERSION}" ]]; then
    step "installing podman-compose ${PODMAN_COMPOSE_VERSION} (PyPI) into ${VENV}"
    python3 -m venv "${VENV}"
    "${VENV}/bin/pip" install -q "podman-compose==${PODMAN_COMPOSE_VERSION}"
  fi
  "${VENV}/bin/podman-compose" --version | head -n 1
}

# --- 3. stand-ins ---------------------------------------------------------------------------------------
# The trace viewer with Jaeger's UI, when the workspace has it (services/trace-viewer); otherwise the
# jaeger stand-in is the small OTLP sink of compose/standins/otlp_sink.py.
TRACE_VIEWER=streambank-trace-viewer
have_trace_viewer() {
  cargo metadata --no-deps --format-version 1 --locked |
    jq -e --arg p "${TRACE_VIEWER}" '[.packages[].name] | index($p)' >/dev/null
}

build_standins() {
  local s name ctx
  for s in "${STANDINS[@]}"; do
    name="${s%%:*}"
    if [[ "${name}" == jaeger ]] && have_trace_viewer; then
      step "stand-in image localhost/streambank-standin/${s} (${TRACE_VIEWER}, compose/standins/jaeger-viewer.Dockerfile)"
      nice -n 19 cargo build --release --locked --package "${TRACE_VIEWER}"
      ctx="$(mktemp -d /tmp/streambank-viewer-ctx.XXXXXX)"
      CLEANUP_DIRS+=("${ctx}")
      mkdir -p "${ctx}/bin"
      install -m 0755 "${CARGO_TARGET_DIR}/release/${TRACE_VIEWER}" "${ctx}/bin/"
      strip --strip-debug "${ctx}/bin/${TRACE_VIEWER}"
      nice -n 19 podman build -q --pull=never -f compose/standins/jaeger-viewer.Dockerfile \
        -t "localhost/streambank-standin/${s}" "${ctx}" >/dev/null
    else
      step "stand-in image localhost/streambank-standin/${s} (compose/standins/${name}.Dockerfile)"
      nice -n 19 podman build -q --pull=never --network host -f "compose/standins/${name}.Dockerfile" \
        -t "localhost/streambank-standin/${s}" compose/standins >/dev/null
    fi
    podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "localhost/streambank-standin/${s}"
  done
}

# --- 4. up ----------------------------------------------------------------------------------------------
check_ports_free() {
  local p busy=()
  for p in "${HOST_PORTS[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/${p}") 2>/dev/null; then busy+=("${p}"); fi
  done
  ((${#busy[@]} == 0)) || die "ports already in use on 127.0.0.1: ${busy[*]} (see compose/standins.yaml)"
}

# The start order the compose file's depends_on asks for, one line per stage: a stage's services
# depend only on services of earlier stages. Then one line per awaited dependency: "SERVICE CONDITION".
start_plan() {
  dc config 2>/dev/null | "${VENV}/bin/python" -c '
import sys, yaml
services = yaml.safe_load(sys.stdin)["services"]
deps = {n: dict(s.get("depends_on") or {}) for n, s in services.items()}
stage, left = {}, set(services)
while left:
    ready = {n for n in left if all(d in stage for d in deps[n])}
    if not ready:
        sys.exit("depends_on has a cycle among " + " ".join(sorted(left)))
    for n in ready:
        stage[n] = max([stage[d] + 1 for d in deps[n]], default=0)
    left -= ready
for level in range(max(stage.values()) + 1):
    print("stage", *sorted(n for n in stage if stage[n] == level))
awaited = {(d, (c or {}).get("condition", "service_started")) for n in deps for d, c in deps[n].items()}
for d, c in sorted(awaited):
    print("await", d, c)'
}

# Services that have a healthcheck.
with_healthcheck() {
  dc config 2>/dev/null | "${VENV}/bin/python" -c '
import sys, yaml
services = yaml.safe_load(sys.stdin)["services"]
print(" ".join(sorted(n for n, s in services.items() if s.get("healthcheck"))))'
}

# wait_healthy SERVICE...: run each one's healthcheck (the command, interval and retries of the compose
# file, which podman-compose passed to podman) until it passes, as Docker's engine would.
wait_healthy() {
  local s c i start=${SECONDS}
  for s in "$@"; do
    c="$(container_of "${s}")"
    [[ -n "${c}" ]] || die "no container for service ${s}"
    for i in $(seq 1 60); do
      if podman healthcheck run "${c}" >/dev/null 2>&1; then break; fi
      ((i < 60)) || die "${s} is not healthy after 60 tries ($(podman inspect -f '{{.State.Status}}' "${c}"))"
      sleep 1
    done
    echo "${s}: $(podman inspect -f '{{.State.Health.Status}}' "${c}") (healthcheck passed on try ${i}, $((SECONDS - start)) s)"
  done
}

# wait_for SERVICE CONDITION: what Compose checks before it starts a dependant.
wait_for() {
  local service="$1" condition="$2" c code
  c="$(container_of "${service}")"
  [[ -n "${c}" ]] || die "no container for service ${service}"
  case "${condition}" in
    service_healthy) wait_healthy "${service}" ;;
    service_completed_successfully)
      code="$(podman wait "${c}")"
      echo "${service}: exited ${code} ($(podman logs "${c}" 2>&1 | tail -n 1))"
      [[ "${code}" == 0 ]] || die "${service} did not complete successfully"
      ;;
    service_started)
      [[ "$(podman inspect -f '{{.State.Status}}' "${c}")" == running ]] || die "${service} is not running"
      echo "${service}: running"
      ;;
    *) die "unknown depends_on condition ${condition}" ;;
  esac
}

bring_up() {
  local plan=() line stage=0 words=() service conditions=() condition
  mapfile -t plan < <(start_plan)
  ((${#plan[@]})) || die "could not read the start order from the compose file"
  for line in "${plan[@]}"; do
    read -r -a words <<<"${line}"
    [[ "${words[0]}" == stage ]] || continue
    stage=$((stage + 1))
    step "stage ${stage}: podman-compose up -d --no-deps ${words[*]:1}"
    dc up -d --no-build --no-deps "${words[@]:1}" </dev/null >"${RUN_DIR}/up-${stage}.log" 2>&1 ||
      { tail -n 30 "${RUN_DIR}/up-${stage}.log"; die "up failed"; }
    for service in "${words[@]:1}"; do
      mapfile -t conditions < <(printf '%s\n' "${plan[@]}" | awk -v s="${service}" '$1 == "await" && $2 == s { print $3 }')
      for condition in "${conditions[@]}"; do wait_for "${service}" "${condition}"; done
    done
  done
  step "healthchecks of every service that has one"
  # shellcheck disable=SC2046 # a list of service names
  wait_healthy $(with_healthcheck)
  podman ps -a --filter "label=com.docker.compose.project=${PROJECT}" \
    --format '{{.Names}}\t{{.Image}}\t{{.Status}}' | sort
}

# --- 5. the walkthrough ---------------------------------------------------------------------------------
# call METHOD URL [curl options...]: sets CODE and BODY, prints both (the body cut at 300 characters).
call() {
  local method="$1" url="$2" out
  shift 2
  out="$(curl -sS -X "${method}" -w '\n%{http_code}' "$@" "${url}")" || die "${method} ${url}: no answer"
  CODE="${out##*$'\n'}"
  BODY="${out%$'\n'*}"
  printf '%s %s -> %s %s\n' "${method}" "${url}" "${CODE}" "${BODY:0:300}"
}
expect_code() { [[ "${CODE}" == "$1" ]] || die "expected HTTP $1, got ${CODE}: ${BODY}"; }
# expect_json FILTER: the last body satisfies the jq filter.
expect_json() {
  jq -e "$1" >/dev/null <<<"${BODY}" || die "the answer does not satisfy \`$1\`: ${BODY}"
  echo "  ok: $1"
}
# eventually SECONDS COMMAND...: runs COMMAND every second until it succeeds.
eventually() {
  local limit="$1" i
  shift
  for ((i = 0; i < limit; i++)); do
    if "$@"; then return 0; fi
    sleep 1
  done
  return 1
}

JSON=(-H 'content-type: application/json')

mail_for_ann() {
  curl -sf "${MAIL}/api/v2/messages" |
    jq -e '[.items[] | select(.To[] | .Mailbox == "ann" and .Domain == "example.com")] | length > 0' >/dev/null
}
# The verification link of Ann's newest mail, from its text part (quoted-printable decoded).
verification_link() {
  curl -sf "${MAIL}/api/v2/messages" |
    jq -r '[.items[] | select(.To[] | .Mailbox == "ann")][0].Raw.Data' |
    python3 -c '
import email, email.policy, re, sys
msg = email.message_from_string(sys.stdin.read(), policy=email.policy.default)
text = msg.get_body(preferencelist=("plain",)).get_content()
m = re.search(r"https?://\S+/v1/users/verify-email\?\S+", text)
print(m.group(0) if m else "")'
}
stream_has_transfer() {
  STREAM="$(dc exec -T redis redis-cli XRANGE bank:events:transfers - + 2>/dev/null)"
  # redis-cli prints one field or value a line: an entry with aggregate_id = the transfer's id.
  awk -v id="${TRANSFER_ID}" 'prev == "aggregate_id" && $0 == id { found = 1 } { prev = $0 }
    END { exit !found }' <<<"${STREAM}"
}
banker_notified() {
  curl -sf "${API}/v1/notifications" -H "authorization: Bearer ${BANKER}" | jq -e '
    [.. | strings | select(test("transfer"; "i"))] | length > 0' >/dev/null
}
services_traced() {
  curl -sf "${TRACES}/api/services" | jq -e '.data as $s |
    ["streambank-api", "streambank-relay", "streambank-worker"] | all(. as $n | $s | index($n))' >/dev/null
}
# A trace whose spans come from the api (one with route=/v1/transfers), the relay and the worker.
one_trace_three_services() {
  TRACE_ID="$(curl -sf "${TRACES}/api/traces?service=streambank-api&limit=1000" | jq -r '
    [.data[] | select(([.processes[].serviceName] | index("streambank-relay") and index("streambank-worker"))
       and any(.spans[].tags[]; .key == "route" and .value == "/v1/transfers"))][0].traceID // empty')"
  [[ -n "${TRACE_ID}" ]]
}

walkthrough() {
  step "1. register Ann; the worker mails her a verification link"
  call POST "${API}/v1/users" "${JSON[@]}" \
    -d '{"username":"ann","full_name":"Ann","email":"ann@example.com","password":"a long passphrase"}'
  expect_code 201
  expect_json '.username == "ann" and .email == "ann@example.com"'

  step "2. the mail in the catcher (MailHog API, ${MAIL}), and its link"
  eventually 30 mail_for_ann || die "no mail for ann@example.com in the catcher after 30 s"
  curl -sf "${MAIL}/api/v2/messages" | jq -r '.items[0] |
    "From: \(.Content.Headers.From[0])\nTo: \(.Content.Headers.To[0])\nSubject: \(.Content.Headers.Subject[0])"'
  local link
  link="$(verification_link)"
  [[ "${link}" == "${MAILED_BASE}/"* ]] || die "no verification link under ${MAILED_BASE} in the mail: '${link}'"
  echo "link in the mail: ${link}"
  # The mail says localhost:8080 (PUBLIC_BASE_URL); this run publishes the api on another port.
  call GET "${API}${link#"${MAILED_BASE}"}"
  expect_code 200
  grep -qi verified <<<"${BODY}" || die "the verification answer does not say verified: ${BODY}"

  step "3. a banker, made with bankctl inside the api container"
  echo "\$ dc exec -e BANKCTL_PASSWORD=... api bankctl users create --username banker ... --role banker --verified"
  dc exec -T -e BANKCTL_PASSWORD='another long passphrase' api bankctl users create \
    --username banker --email banker@example.com --full-name "First Banker" --role banker --verified ||
    die "bankctl users create failed"

  step "4. log in as both"
  call POST "${API}/v1/sessions" "${JSON[@]}" -d '{"username":"ann","password":"a long passphrase"}'
  expect_code 201
  expect_json '.access_token | length > 20'
  expect_json '.user.username == "ann" and .user.email_verified == true'
  ANN="$(jq -r .access_token <<<"${BODY}")"
  call POST "${API}/v1/sessions" "${JSON[@]}" -d '{"username":"banker","password":"another long passphrase"}'
  expect_code 201
  expect_json '.user.role == "banker"'
  BANKER="$(jq -r .access_token <<<"${BODY}")"

  step "5. each opens a USD account; the banker deposits \$100.00 into Ann's"
  call POST "${API}/v1/accounts" -H "authorization: Bearer ${ANN}" "${JSON[@]}" -d '{"currency":"USD"}'
  expect_code 201
  expect_json '.currency == "USD" and (.id | type == "number")'
  ANN_ACCOUNT="$(jq -r .id <<<"${BODY}")"
  call POST "${API}/v1/accounts" -H "authorization: Bearer ${BANKER}" "${JSON[@]}" -d '{"currency":"USD"}'
  expect_code 201
  BANKER_ACCOUNT="$(jq -r .id <<<"${BODY}")"
  call POST "${API}/v1/accounts/${ANN_ACCOUNT}/deposits" -H "authorization: Bearer ${BANKER}" "${JSON[@]}" \
    -d '{"amount":10000,"currency":"USD"}'
  expect_code 201
  expect_json ".entry.account_id == ${ANN_ACCOUNT} and .entry.amount == 10000 and .account.balance == 10000"

  step "6. Ann transfers \$25.00 to the banker"
  call POST "${API}/v1/transfers" -H "authorization: Bearer ${ANN}" "${JSON[@]}" \
    -H 'idempotency-key: readme-transfer-1' \
    -d "{\"from_account_id\":${ANN_ACCOUNT},\"to_account_id\":${BANKER_ACCOUNT},\"amount\":2500,\"currency\":\"USD\"}"
  expect_code 201
  expect_json ".transfer.amount == 2500 and .transfer.to_account_id == ${BANKER_ACCOUNT} and .from_account.balance == 7500"
  TRANSFER_ID="$(jq -r '.transfer.id' <<<"${BODY}")"
  call GET "${API}/v1/accounts/${ANN_ACCOUNT}" -H "authorization: Bearer ${ANN}"
  expect_code 200
  expect_json '.balance == 7500'
  call GET "${API}/v1/accounts/${BANKER_ACCOUNT}" -H "authorization: Bearer ${BANKER}"
  expect_code 200
  expect_json '.balance == 2500'

  step "7. the event in the stream, and the banker's notification"
  echo "\$ dc exec redis redis-cli XRANGE bank:events:transfers - +"
  eventually 30 stream_has_transfer || die "transfer ${TRANSFER_ID} is not in bank:events:transfers: ${STREAM:-}"
  printf '%s\n' "${STREAM}" | head -n 40
  eventually 30 banker_notified || die "no notification about the transfer for the banker after 30 s"
  call GET "${API}/v1/notifications" -H "authorization: Bearer ${BANKER}"
  expect_code 200

  step "the gateway answers the same calls"
  call GET "${GATEWAY}/v1/accounts" -H "authorization: Bearer ${ANN}"
  expect_code 200
  expect_json "[.. | objects | select(has(\"id\")) | .id] | index(${ANN_ACCOUNT}) != null"

  step "health and metrics ports"
  local url
  for url in http://127.0.0.1:49101/readyz http://127.0.0.1:49102/readyz "${API}/readyz"; do
    call GET "${url}"
    expect_code 200
  done
  CODE="$(curl -s -o "${RUN_DIR}/metrics" -w '%{http_code}' http://127.0.0.1:49100/metrics)"
  if [[ "${CODE}" != 200 ]] || ! grep -q '^# TYPE' "${RUN_DIR}/metrics"; then die "api /metrics: HTTP ${CODE}"; fi
  echo "GET http://127.0.0.1:49100/metrics -> 200 ($(grep -c '^# TYPE' "${RUN_DIR}/metrics") metric families)"

  step "traces (Jaeger query API, ${TRACES})"
  eventually 60 services_traced || die "services in the trace store: $(curl -s "${TRACES}/api/services")"
  call GET "${TRACES}/api/services"
  eventually 30 one_trace_three_services ||
    die "no trace holds spans of the api (route=/v1/transfers), the relay and the worker"
  curl -sf "${TRACES}/api/traces/${TRACE_ID}" | jq -r '.data[0] as $t | "trace \($t.traceID): \($t.spans | length) spans",
    ($t.spans[] | "  \($t.processes[.processID].serviceName): \(.operationName)")' | head -n 40
}

# --- main -----------------------------------------------------------------------------------------------
RUN_DIR="$(mktemp -d /tmp/streambank-compose-run.XXXXXX)"
CLEANUP_DIRS+=("${RUN_DIR}")

if ((DOWN_ONLY)); then
  ensure_compose_tools >/dev/null
  teardown
  exit 0
fi

step "tools"
ensure_compose_tools
CLEANUP_HOOKS+=(on_exit)
teardown   # what an interrupted run left behind
check_ports_free

ensure_base_image
if ((SKIP_BUILD)); then
  podman image exists "${IMAGE}" || die "--skip-build: no ${IMAGE} in podman's store"
  echo "using ${IMAGE} as it is (--skip-build)"
else
  build_binaries
  build_image
fi
build_standins

bring_up
walkthrough
step "the compose walkthrough passed"
