#!/usr/bin/env bash
# Shell test of scripts/engines.sh, from start to stop:
#   - `all start` (twice: the second must leave everything alone) and `all env`;
#   - XADD / XGROUP CREATE / XREADGROUP / XACK / WAIT through `redis-cli -c` on hash-tagged keys
#     {bank:p0}..{bank:p7}, which must land on more than one master (the map is printed);
#   - the cost of WAIT: N XADDs alone against N XADD + `WAIT 1 100` pairs, one redis-cli session each;
#   - kill-master (the master of slot 0): the cluster must be ok again within 15 s and a stream written
#     with WAIT 1 (entries, consumer group, pending list) must be intact on the promoted replica; then
#     restart-node brings the killed node back as a replica;
#   - a row written on the Postgres primary must show on the replica, which refuses writes; lag;
#   - `all stop`, after which no port answers and no data directory is left.
# Exits non-zero with a message on the first failure (logs are tailed, the engines stopped).
#
# Usage: scripts/test-engines.sh
#   SB_TEST_FAILOVERS=5     how many kill-master / restart-node rounds (default 1)
#   SB_TEST_WAIT_WRITES=N   writes in the WAIT cost figure (default 1000)
#   SB_TEST_KEEP=1          leave the engines running at the end
# plus the SB_* variables of scripts/engines.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
E="${ROOT}/scripts/engines.sh"
FAILOVERS="${SB_TEST_FAILOVERS:-1}"
WRITES="${SB_TEST_WAIT_WRITES:-1000}"
DIR="${SB_ENGINES_DIR:-/tmp/streambank-engines}"
WORK="$(mktemp -d)"
passed=0
stopped=0

step() { printf '\n==> [%ss] %s\n' "${SECONDS}" "$*"; }
ok() {
  passed=$((passed + 1))
  echo "  ok: $*"
}
fail() {
  echo "test-engines: FAIL: $*" >&2
  exit 1
}
now_ms() {
  local t="${EPOCHREALTIME//[!0-9]/}"
  echo $((t / 1000))
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

finish() {
  local rc=$? f
  if ((rc != 0)); then
    for f in "${DIR}"/redis-*/redis.log "${DIR}"/pg-*/postgres.log; do
      [[ -f "${f}" ]] || continue
      echo "--- last lines of ${f}" >&2
      tail -n 12 "${f}" >&2
    done
  fi
  if ((stopped == 0)) && [[ "${SB_TEST_KEEP:-0}" != 1 ]]; then
    "${E}" all stop || true
  fi
  rm -rf "${WORK}"
  if ((rc == 0)); then
    echo "test-engines: ${passed} passed, 0 failed"
  else
    echo "test-engines: ${passed} passed, 1 failed"
  fi
  exit "${rc}"
}
trap finish EXIT

rcli() { timeout 10 redis-cli -h 127.0.0.1 -p "$@"; }
# redis-cli -c reading commands on stdin; drops its "-> Redirected to ..." notes.
rcli_c_stdin() { timeout 60 redis-cli -c -h 127.0.0.1 -p "$1" | { grep -v '^-> Redirected' || true; }; }
# The first node of REDIS_CLUSTER_NODES that answers.
live_seed() {
  local n
  for n in "${NODES[@]}"; do
    if [[ "$(rcli "${n##*:}" ping 2>/dev/null)" == PONG ]]; then
      echo "${n##*:}"
      return 0
    fi
  done
  fail "no node of REDIS_CLUSTER_NODES answers"
}
# The port of the master that serves KEY: a node that does not own it answers MOVED.
owner_of() {
  local seed reply
  seed="$(live_seed)"
  reply="$(rcli "${seed}" exists "$1" 2>&1)" || true
  if [[ "${reply}" =~ ^MOVED\ [0-9]+\ [0-9.]+:([0-9]+) ]]; then
    echo "${BASH_REMATCH[1]}"
  elif [[ "${reply}" =~ ^[0-9]+$ ]]; then
    echo "${seed}"
  else
    fail "cannot tell which node serves ${1}: ${reply}"
  fi
}
# The master that serves slot 0 (the one kill-master kills by default).
slot0_master() {
  rcli "$(live_seed)" cluster nodes |
    awk '$3 ~ /master/ && $3 !~ /fail/ { for (i = 9; i <= NF; i++) if ($i ~ /^0(-|$)/) { split($2, a, /[:@]/); print a[2] } }'
}
xinfo_field() {
  rcli "$1" xinfo stream "$2" | awk -v f="$3" 'prev == f { print; found = 1 } { prev = $0 } END { exit !found }'
}

# ---------------------------------------------------------------------------------------------
step "scripts/engines.sh all start"
t0="$(now_ms)"
"${E}" all start || fail "all start failed"
ok "all start in $(($(now_ms) - t0)) ms"
"${E}" all status || fail "all status says not healthy right after start"
ok "all status: healthy"

step "a second start leaves both engines alone"
t0="$(now_ms)"
out="$("${E}" all start 2>&1)" || fail "second all start failed: ${out}"
echo "${out}"
[[ "$(grep -c 'already up' <<<"${out}")" == 2 ]] || fail "second start did not find both engines up"
ok "second start was a no-op ($(($(now_ms) - t0)) ms)"

step "all env"
envs="$("${E}" all env)" || fail "all env failed"
echo "${envs}"
[[ "$(wc -l <<<"${envs}")" == 3 ]] || fail "all env should print 3 lines"
if grep -qvE '^export [A-Z_]+=[^[:space:]]+$' <<<"${envs}"; then fail "all env printed a line that is not 'export VAR=value'"; fi
eval "${envs}"
[[ -n "${REDIS_CLUSTER_NODES:-}" && -n "${DATABASE_URL:-}" && -n "${DATABASE_READ_URL:-}" ]] ||
  fail "REDIS_CLUSTER_NODES, DATABASE_URL and DATABASE_READ_URL must all be set"
IFS=, read -ra NODES <<<"${REDIS_CLUSTER_NODES}"
((${#NODES[@]} == 6)) || fail "REDIS_CLUSTER_NODES should list 6 nodes, has ${#NODES[@]}"
for n in "${NODES[@]}"; do
  [[ "${n}" =~ ^redis://127\.0\.0\.1:[0-9]+$ ]] || fail "bad node URL ${n}"
  [[ "${n##*:}" != 6379 ]] || fail "REDIS_CLUSTER_NODES points at the shared Redis"
done
[[ "${DATABASE_URL}" != *:5432/* && "${DATABASE_READ_URL}" != *:5432/* ]] || fail "a URL points at the shared Postgres"
ok "env: 6 cluster nodes, a primary and a replica URL"

# ---------------------------------------------------------------------------------------------
step "streams on hash-tagged keys through redis-cli -c"
SEED="$(live_seed)"
declare -A masters=()
for i in 0 1 2 3 4 5 6 7; do
  key="{bank:p${i}}:events:transfers"
  owner="$(owner_of "${key}")"
  masters[${owner}]=1
  printf '  %-30s slot %5s -> master 127.0.0.1:%s\n' "${key}" "$(rcli "${SEED}" cluster keyslot "${key}")" "${owner}"
done
((${#masters[@]} >= 2)) || fail "all 8 keys landed on one master"
ok "8 keys spread over ${#masters[@]} masters (${!masters[*]})"

for i in 0 1 2 3 4 5 6 7; do
  key="{bank:p${i}}:events:transfers"
  rcli "${SEED}" -c del "${key}" >/dev/null
  id="$(rcli "${SEED}" -c xadd "${key}" '*' kind transfer.completed n "${i}")"
  [[ "${id}" =~ ^[0-9]+-[0-9]+$ ]] || fail "XADD ${key}: ${id}"
  reply="$(rcli "${SEED}" -c xgroup create "${key}" relay 0)"
  [[ "${reply}" == OK ]] || fail "XGROUP CREATE ${key}: ${reply}"
  reply="$(rcli "${SEED}" -c xreadgroup group relay c1 count 10 streams "${key}" '>')"
  grep -qxF "${id}" <<<"${reply}" || fail "XREADGROUP ${key} did not return ${id}: ${reply}"
  reply="$(rcli "${SEED}" -c xack "${key}" relay "${id}")"
  [[ "${reply}" == 1 ]] || fail "XACK ${key}: ${reply}"
  # One session: redis-cli -c follows the MOVED of XADD, so WAIT runs on the key's master.
  reply="$(printf 'XADD %s * kind wait\nWAIT 1 1000\n' "${key}" | rcli_c_stdin "${SEED}" | tail -n 1)"
  [[ "${reply}" == 1 ]] || fail "WAIT 1 1000 after XADD ${key} answered '${reply}', not 1 replica"
done
ok "XADD, XGROUP CREATE, XREADGROUP, XACK and WAIT 1 on all 8 keys"

# ---------------------------------------------------------------------------------------------
step "the cost of WAIT 1 100 (${WRITES} writes, one redis-cli session each)"
key="{bank:p0}:bench:wait"
owner="$(owner_of "${key}")"
rcli "${owner}" del "${key}" >/dev/null
for ((i = 0; i < WRITES; i++)); do echo "XADD ${key} * n ${i}"; done >"${WORK}/xadd.txt"
for ((i = 0; i < WRITES; i++)); do printf 'XADD %s * n %s\nWAIT 1 100\n' "${key}" "${i}"; done >"${WORK}/xadd-wait.txt"
t0="$(now_ms)"
rcli_c_stdin "${owner}" <"${WORK}/xadd.txt" >"${WORK}/xadd.out"
ms_alone=$(($(now_ms) - t0))
t0="$(now_ms)"
rcli_c_stdin "${owner}" <"${WORK}/xadd-wait.txt" >"${WORK}/xadd-wait.out"
ms_wait=$(($(now_ms) - t0))
ids="$(grep -cE '^[0-9]+-[0-9]+$' "${WORK}/xadd.out" || true)"
((ids == WRITES)) || fail "only ${ids} of ${WRITES} plain XADDs returned an id"
acked="$(grep -cx 1 "${WORK}/xadd-wait.out" || true)"
echo "  ${WRITES} XADD alone:        ${ms_alone} ms ($((ms_alone * 1000 / WRITES)) us each)"
echo "  ${WRITES} XADD + WAIT 1 100: ${ms_wait} ms ($((ms_wait * 1000 / WRITES)) us each), ${acked} acked by the replica"
echo "  WAIT adds about $(((ms_wait - ms_alone) * 1000 / WRITES)) us per write"
((acked * 100 >= WRITES * 99)) || fail "only ${acked} of ${WRITES} WAITs saw the replica within 100 ms"
ok "WAIT figures measured; ${acked}/${WRITES} acked"
rcli "${owner}" del "${key}" >/dev/null

# ---------------------------------------------------------------------------------------------
failover_ms=()
for ((round = 1; round <= FAILOVERS; round++)); do
  step "failover ${round}/${FAILOVERS}: kill -9 the master of slot 0"
  victim="$(slot0_master)"
  [[ "${victim}" =~ ^[0-9]+$ ]] || fail "cannot find the master of slot 0"
  key=""
  for ((j = 0; j < 64; j++)); do
    if [[ "$(owner_of "{bank:p${j}}:events:failover")" == "${victim}" ]]; then
      key="{bank:p${j}}:events:failover"
      break
    fi
  done
  [[ -n "${key}" ]] || fail "no tag {bank:p0..63} lands on ${victim}"
  rcli "${victim}" del "${key}" >/dev/null
  {
    for ((i = 0; i < 100; i++)); do echo "XADD ${key} * kind transfer.completed n ${i}"; done
    echo "XGROUP CREATE ${key} relay 0"
    echo "XREADGROUP GROUP relay c1 COUNT 40 STREAMS ${key} >"
    echo "WAIT 1 2000"
  } | rcli_c_stdin "${victim}" >"${WORK}/failover-write.out"
  [[ "$(tail -n 1 "${WORK}/failover-write.out")" == 1 ]] || fail "WAIT 1 2000 on ${victim} was not acked by its replica"
  len_before="$(rcli "${victim}" xlen "${key}")"
  last_before="$(xinfo_field "${victim}" "${key}" last-generated-id)"
  pending_before="$(rcli "${victim}" xpending "${key}" relay | sed -n 1p)"
  [[ "${len_before}" == 100 && "${pending_before}" == 40 ]] ||
    fail "before the kill: xlen ${len_before}, pending ${pending_before}"
  echo "  ${key} on ${victim}: 100 entries, last id ${last_before}, 40 pending in group relay, WAIT 1 acked"

  out="$("${E}" redis-cluster kill-master)" || fail "kill-master failed"
  echo "  ${out}"
  [[ "${out}" =~ ^killed=([0-9]+)\ new_master=([0-9]+)\ failover_ms=([0-9]+)$ ]] ||
    fail "kill-master printed '${out}'"
  killed="${BASH_REMATCH[1]}" new_master="${BASH_REMATCH[2]}" ms="${BASH_REMATCH[3]}"
  [[ "${killed}" == "${victim}" ]] || fail "kill-master killed ${killed}, expected the master of slot 0 ${victim}"
  [[ "${new_master}" != "${victim}" ]] || fail "the new master is the killed one"
  ((ms <= 15000)) || fail "failover took ${ms} ms (> 15 s)"
  ! port_open "${victim}" || fail "${victim} still answers after kill -9"
  "${E}" redis-cluster wait-ok 15 || fail "cluster not ok after the failover"
  failover_ms+=("${ms}")
  ok "${new_master} took over from ${victim} in ${ms} ms"

  [[ "$(owner_of "${key}")" == "${new_master}" ]] || fail "${key} is not served by ${new_master}"
  seed="$(live_seed)"
  len_after="$(rcli "${seed}" -c xlen "${key}")"
  last_after="$(xinfo_field "${new_master}" "${key}" last-generated-id)"
  pending_after="$(rcli "${seed}" -c xpending "${key}" relay | sed -n 1p)"
  [[ "${len_after}" == 100 && "${last_after}" == "${last_before}" && "${pending_after}" == 40 ]] ||
    fail "after the failover: xlen ${len_after} (100), last id ${last_after} (${last_before}), pending ${pending_after} (40)"
  id="$(rcli "${seed}" -c xadd "${key}" '*' kind after.failover)"
  [[ "${id}" =~ ^[0-9]+-[0-9]+$ ]] || fail "XADD after the failover: ${id}"
  ok "the WAIT-acked stream survived: 100 entries, last id, 40 pending; new writes go to ${new_master}"

  out="$("${E}" redis-cluster restart-node "${victim}")" || fail "restart-node ${victim} failed"
  echo "  ${out}"
  [[ "${out}" == "restarted=${victim} master=${new_master} "* ]] || fail "${victim} did not rejoin as a replica of ${new_master}"
  "${E}" redis-cluster status >/dev/null || fail "cluster not healthy after restart-node"
  ok "${victim} is back as a replica of ${new_master}; all six nodes healthy"
done

# ---------------------------------------------------------------------------------------------
step "Postgres: write on the primary, read on the replica"
psql_q() { PGCONNECT_TIMEOUT=5 psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
psql_q "${DATABASE_URL}" -c 'create table if not exists engines_check
  (id bigserial primary key, token text not null, at timestamptz not null default now())'
token="t-$$-${RANDOM}-$(date +%s)"
psql_q "${DATABASE_URL}" -c "insert into engines_check (token) values ('${token}')"
t0="$(now_ms)"
until [[ "$(psql_q "${DATABASE_READ_URL}" -c "select count(*) from engines_check where token = '${token}'" 2>/dev/null)" == 1 ]]; do
  (($(now_ms) - t0 < 10000)) || fail "the row written on the primary did not reach the replica in 10 s"
  sleep 0.02
done
ok "the row is on the replica $(($(now_ms) - t0)) ms after the primary's commit"
if psql_q "${DATABASE_READ_URL}" -c "insert into engines_check (token) values ('x')" 2>"${WORK}/ro.err"; then
  fail "the replica accepted a write"
fi
grep -q 'read-only transaction' "${WORK}/ro.err" || fail "the replica refused the write oddly: $(cat "${WORK}/ro.err")"
ok "the replica refuses writes (read-only transaction)"
lag="$("${E}" pg-replica lag)" || fail "pg-replica lag failed"
[[ "${lag}" =~ ^[0-9]+$ ]] || fail "pg-replica lag printed '${lag}'"
ok "replay lag ${lag} bytes"

# ---------------------------------------------------------------------------------------------
step "scripts/engines.sh all stop"
"${E}" all stop || fail "all stop failed"
stopped=1
for n in "${NODES[@]}"; do
  ! port_open "${n##*:}" || fail "${n} still answers after stop"
done
for u in "${DATABASE_URL}" "${DATABASE_READ_URL}"; do
  p="${u##*127.0.0.1:}"
  ! port_open "${p%%/*}" || fail "Postgres on ${p%%/*} still answers after stop"
done
if compgen -G "${DIR}/redis-*" >/dev/null || compgen -G "${DIR}/pg-*" >/dev/null; then
  fail "data directories are left in ${DIR}"
fi
ok "nothing answers and no data directory is left"

step "figures"
echo "  WAIT 1 100: ${WRITES} XADD ${ms_alone} ms alone, ${ms_wait} ms with WAIT ($(((ms_wait - ms_alone) * 1000 / WRITES)) us added per write)"
sorted="$(printf '%s\n' "${failover_ms[@]}" | sort -n | tr '\n' ' ')"
echo "  failover ms (${#failover_ms[@]} kills): ${sorted}"
