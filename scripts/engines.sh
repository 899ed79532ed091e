#!/usr/bin/env bash
# Private database engines on loopback for tests, CI and benchmarks. They never touch the shared servers
# (Redis on 6379, Postgres on 5432): every port is our own and every file is under SB_ENGINES_DIR.
#
#   scripts/engines.sh redis-cluster start|stop|status|env|wait-ok [SECS]|kill-master [N]|restart-node PORT
#   scripts/engines.sh pg-replica    start|stop|status|env|lag
#   scripts/engines.sh all           start|stop|status|env
#
# redis-cluster: 3 masters + 3 replicas (Debian's redis-server 7.0) on 127.0.0.1, ports
#   SB_CLUSTER_BASE_PORT (17100) .. +5, cluster bus on port+10000. kill-master kill -9's the Nth master
#   (masters ordered by their lowest slot; default 1 = the one holding slot 0), waits for a replica to take
#   over and prints `killed=PORT new_master=PORT failover_ms=MS`. restart-node PORT brings a killed node
#   back; it rejoins as a replica.
# pg-replica: a Postgres primary on SB_PG_PRIMARY_PORT (55440) and a streaming replica on
#   SB_PG_REPLICA_PORT (55441), with a database `streambank`. lag prints primary minus replay LSN in bytes.
# env prints only `export VAR=...` lines on stdout, for `eval "$(scripts/engines.sh all env)"`.
# Progress goes to stderr. start is idempotent: a healthy set is left alone, a dead or half-dead one is
# wiped and created anew. stop removes the data directories.
set -euo pipefail

DIR="${SB_ENGINES_DIR:-/tmp/streambank-engines}"
BASE="${SB_CLUSTER_BASE_PORT:-17100}"
PG_PRIMARY_PORT="${SB_PG_PRIMARY_PORT:-55440}"
PG_REPLICA_PORT="${SB_PG_REPLICA_PORT:-55441}"
WAIT_SECS="${SB_ENGINES_WAIT_SECS:-60}"
FAILOVER_SECS="${SB_FAILOVER_SECS:-15}"
SHARED_PORTS=(6379 5432)

log() { echo "engines: $*" >&2; }
die() {
  echo "engines: error: $*" >&2
  exit 1
}
usage() {
  echo "usage:" >&2
  sed -n 's|^#   \(scripts/engines.sh .*\)|  \1|p' "${BASH_SOURCE[0]}" >&2
  exit 2
}
# Milliseconds since the epoch, without a fork.
now_ms() {
  local t="${EPOCHREALTIME//[!0-9]/}"
  echo $((t / 1000))
}
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A zombie counts as dead: daemons are children of PID 1, which may take a second or more to reap them.
pid_alive() {
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null && [[ "$(ps -o stat= -p "$1" 2>/dev/null)" != Z* ]]
}

check_settings() {
  [[ "${DIR}" != *[[:space:]]* ]] || die "SB_ENGINES_DIR must not contain spaces: '${DIR}'"
  [[ "${DIR}" == /* ]] || DIR="${PWD}/${DIR}"
  DIR="$(realpath -m "${DIR}")"
  [[ "${DIR}" != / ]] || die "SB_ENGINES_DIR must not be /"
  local p s all=()
  for p in "${BASE}" "${PG_PRIMARY_PORT}" "${PG_REPLICA_PORT}"; do
    is_uint "${p}" || die "ports must be numbers, got '${p}'"
  done
  ((BASE >= 1024 && BASE + 5 + 10000 <= 65535)) ||
    die "SB_CLUSTER_BASE_PORT=${BASE}: need 1024 <= base and base+5+10000 (cluster bus) <= 65535"
  for p in $(seq "${BASE}" $((BASE + 5))); do all+=("${p}" $((p + 10000))); done
  all+=("${PG_PRIMARY_PORT}" "${PG_REPLICA_PORT}")
  ((PG_PRIMARY_PORT != PG_REPLICA_PORT)) || die "the Postgres primary and replica need two ports"
  for p in "${all[@]}"; do
    ((p >= 1024 && p <= 65535)) || die "port ${p} is out of range"
    for s in "${SHARED_PORTS[@]}"; do
      ((p != s)) || die "port ${p} is a shared server's; pick other SB_* ports"
    done
  done
  for p in "${PG_PRIMARY_PORT}" "${PG_REPLICA_PORT}"; do
    if ((p >= BASE && p <= BASE + 5)) || ((p >= BASE + 10000 && p <= BASE + 10005)); then
      die "Postgres port ${p} collides with the Redis cluster's ports"
    fi
  done
}

# Serialise the commands that change state (start, stop, kill-master, restart-node). Daemons are started
# with fd 9 closed, or they would hold the lock for as long as they live.
take_lock() {
  mkdir -p "${DIR}"
  chmod 755 "${DIR}"
  exec 9>"${DIR}/.lock"
  flock -w 300 9 || die "another engines.sh holds ${DIR}/.lock"
}

# ---------------------------------------------------------------- Redis Cluster

redis_ports() { seq "${BASE}" $((BASE + 5)); }
rdir() { echo "${DIR}/redis-$1"; }
rcli() { timeout 5 redis-cli -h 127.0.0.1 -p "$@"; }

# True when the node on PORT answers and runs out of our data directory (so it is ours, not a stranger's).
redis_ours() {
  local dir
  dir="$(rcli "$1" config get dir 2>/dev/null | sed -n 2p)" || return 1
  [[ "${dir}" == "$(rdir "$1")" ]]
}
redis_up() { [[ "$(rcli "$1" ping 2>/dev/null)" == PONG ]] && redis_ours "$1"; }
redis_live_ports() {
  local p
  for p in $(redis_ports); do redis_up "${p}" && echo "${p}"; done
  return 0
}
first_live_port() {
  local p
  for p in $(redis_ports); do
    if redis_up "${p}"; then
      echo "${p}"
      return 0
    fi
  done
  return 1
}
info_field() { tr -d '\r' | awk -F: -v f="$1" '$1 == f { print $2 }'; }
cinfo() { rcli "$1" cluster info 2>/dev/null | info_field "$2"; }
rinfo() { rcli "$1" info "$2" 2>/dev/null | info_field "$3"; }

# "PORT first-slot ranges..." for every node that serves slots, as PORT sees the cluster, sorted.
slot_map() {
  rcli "$1" cluster nodes 2>/dev/null | awk '{
      split($2, a, /[:@,]/); s = ""; first = -1
      for (i = 9; i <= NF; i++) if ($i !~ /^\[/) {
        s = s " " $i; split($i, r, "-"); if (first < 0 || r[1] + 0 < first) first = r[1] + 0
      }
      if (s != "") print a[2], first s
    }' | sort -k2,2n
}
# The port that serves SLOT in a slot_map read on stdin (reads all of it: no SIGPIPE upstream).
slot_owner() {
  awk -v slot="$1" '{
      for (i = 3; i <= NF; i++) { n = split($i, r, "-"); lo = r[1] + 0; hi = (n > 1 ? r[2] : r[1]) + 0
        if (slot >= lo && slot <= hi && owner == "") owner = $1 }
    } END { if (owner != "") print owner }'
}

# Every live node of ours says cluster_state:ok with all 16384 slots ok, and all of them see the same
# owners for the same slots.
redis_cluster_ok() {
  local p live first="" map
  live="$(redis_live_ports)"
  [[ -n "${live}" ]] || return 1
  for p in ${live}; do
    [[ "$(cinfo "${p}" cluster_state)" == ok ]] || return 1
    [[ "$(cinfo "${p}" cluster_slots_ok)" == 16384 ]] || return 1
    map="$(slot_map "${p}")"
    [[ "$(wc -l <<<"${map}")" == 3 ]] || return 1
    if [[ -z "${first}" ]]; then first="${map}"; elif [[ "${map}" != "${first}" ]]; then return 1; fi
  done
}
# Cluster ok, all six nodes up, 3 masters and 3 replicas whose links are up and synced.
redis_healthy() {
  local p role masters=0 replicas=0
  [[ "$(redis_live_ports | wc -l)" == 6 ]] || return 1
  redis_cluster_ok || return 1
  for p in $(redis_ports); do
    role="$(rinfo "${p}" replication role)"
    case "${role}" in
    master) masters=$((masters + 1)) ;;
    slave)
      [[ "$(rinfo "${p}" replication master_link_status)" == up ]] || return 1
      [[ "$(rinfo "${p}" replication master_sync_in_progress)" == 0 ]] || return 1
      replicas=$((replicas + 1))
      ;;
    *) return 1 ;;
    esac
  done
  ((masters == 3 && replicas == 3))
}
# wait_for SECS WHAT CMD...: run CMD every 50 ms until it succeeds; after SECS say so and return 1.
wait_for() {
  local secs="$1" what="$2" deadline
  shift 2
  deadline=$(($(now_ms) + secs * 1000))
  until "$@"; do
    if (($(now_ms) >= deadline)); then
      log "error: timed out after ${secs}s waiting for ${what}"
      return 1
    fi
    sleep 0.05
  done
}

redis_launch() {
  local p="$1" d
  d="$(rdir "$1")"
  mkdir -p "${d}"
  redis-server --bind 127.0.0.1 --port "${p}" --protected-mode yes \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000 \
    --cluster-replica-validity-factor 0 --save '' --appendonly no --repl-diskless-sync-delay 0 \
    --daemonize yes --dir "${d}" --logfile "${d}/redis.log" --pidfile "${d}/redis.pid" >/dev/null 9>&-
}

# Stop every node of ours (answering or only left as a pid file) and remove the data directories.
redis_teardown() {
  local p d pid
  for p in $(redis_ports); do
    d="$(rdir "${p}")"
    pid=""
    if redis_up "${p}"; then
      pid="$(rinfo "${p}" server process_id)"
      rcli "${p}" shutdown nosave now >/dev/null 2>&1 || true
    elif [[ -f "${d}/redis.pid" ]]; then
      pid="$(cat "${d}/redis.pid")"
      # Only a redis-server whose pid file is ours; a recycled pid is left alone.
      [[ "$(ps -o comm= -p "${pid}" 2>/dev/null)" == redis-server ]] || pid=""
    fi
    if pid_alive "${pid}"; then
      for _ in $(seq 100); do pid_alive "${pid}" || break; sleep 0.05; done
      pid_alive "${pid}" && kill -9 "${pid}" 2>/dev/null || true
    fi
    rm -rf "${d}"
  done
  rm -f "${DIR}/redis-cluster-create.log"
}

redis_start() {
  local p ports=() t0
  t0="$(now_ms)"
  if redis_healthy; then
    log "redis-cluster: already up and ok on 127.0.0.1:${BASE}-$((BASE + 5))"
    return 0
  fi
  if redis_cluster_ok && redis_restart_dead_nodes && redis_healthy; then
    log "redis-cluster: up and ok again on 127.0.0.1:${BASE}-$((BASE + 5)) in $(($(now_ms) - t0)) ms"
    return 0
  fi
  if compgen -G "${DIR}/redis-*" >/dev/null || [[ -n "$(redis_live_ports)" ]]; then
    log "redis-cluster: a previous run left nodes or files in ${DIR}; wiping them"
  fi
  redis_teardown
  for p in $(redis_ports); do
    ! port_open "${p}" || die "127.0.0.1:${p} is taken by a process that is not ours"
    ! port_open $((p + 10000)) || die "127.0.0.1:$((p + 10000)) (cluster bus) is taken"
  done
  for p in $(redis_ports); do
    redis_launch "${p}"
    ports+=("127.0.0.1:${p}")
  done
  for p in $(redis_ports); do
    wait_for 10 "redis on ${p} to answer" redis_up "${p}" || exit 1
  done
  redis-cli --cluster create "${ports[@]}" --cluster-replicas 1 --cluster-yes \
    >"${DIR}/redis-cluster-create.log" 2>&1 ||
    die "redis-cli --cluster create failed; see ${DIR}/redis-cluster-create.log"
  wait_for "${WAIT_SECS}" "cluster_state:ok and synced replicas" redis_healthy || exit 1
  log "redis-cluster: up and ok on 127.0.0.1:${BASE}-$((BASE + 5)) in $(($(now_ms) - t0)) ms"
}

# The cluster is ok without some nodes (after kill-master): bring those back from their nodes.conf.
redis_restart_dead_nodes() {
  local p d
  for p in $(redis_ports); do
    d="$(rdir "${p}")"
    ! redis_up "${p}" || continue
    [[ -f "${d}/nodes.conf" ]] && ! port_open "${p}" || return 1
    log "redis-cluster: node ${p} is down; restarting it"
    redis_rejoin "${p}" >/dev/null || return 1
  done
}

redis_stop() {
  redis_teardown
  log "redis-cluster: stopped, data removed"
}

redis_env() {
  local p nodes=()
  for p in $(redis_ports); do nodes+=("redis://127.0.0.1:${p}"); done
  local IFS=,
  echo "export REDIS_CLUSTER_NODES=${nodes[*]}"
}

redis_status() {
  local p d role pid slots state
  printf '%-6s %-8s %-7s %-6s %s\n' PORT PID ROLE STATE SLOTS
  for p in $(redis_ports); do
    d="$(rdir "${p}")"
    if redis_up "${p}"; then
      pid="$(rinfo "${p}" server process_id)"
      role="$(rinfo "${p}" replication role)"
      state="$(cinfo "${p}" cluster_state)"
      slots="$(slot_map "${p}" | awk -v p="${p}" '$1 == p { $1 = ""; $2 = ""; sub(/^ +/, ""); print }')"
      [[ "${role}" == slave ]] && slots="replica of $(rinfo "${p}" replication master_port)"
    else
      pid="-" role="down" state="-" slots=""
      [[ -d "${d}" ]] || role="absent"
    fi
    printf '%-6s %-8s %-7s %-6s %s\n' "${p}" "${pid}" "${role}" "${state}" "${slots}"
  done
  if redis_healthy; then
    echo "redis-cluster: healthy"
  elif redis_cluster_ok; then
    echo "redis-cluster: ok, but not every node is up and synced"
    return 1
  else
    echo "redis-cluster: not ok"
    return 1
  fi
}

redis_wait_ok() {
  local secs="${1:-${WAIT_SECS}}"
  is_uint "${secs}" || die "wait-ok takes a number of seconds"
  wait_for "${secs}" "cluster_state:ok on every live node" redis_cluster_ok || exit 1
  log "redis-cluster: ok"
}

redis_kill_master() {
  local n="${1:-1}" seed victim pid first t0 took
  if ! is_uint "${n}" || ((n < 1 || n > 3)); then
    die "kill-master takes N in 1..3 (masters ordered by lowest slot)"
  fi
  redis_cluster_ok || die "the cluster is not ok; nothing to fail over"
  seed="$(first_live_port)" || die "no node of ours answers"
  read -r victim first < <(slot_map "${seed}" | sed -n "${n}p" | awk '{ print $1, $2 }') || true
  [[ -n "${victim}" ]] || die "found no master number ${n}"
  redis_ours "${victim}" || die "the master on ${victim} is not ours"
  pid="$(rinfo "${victim}" server process_id)"
  pid_alive "${pid}" || die "no live pid for the master on ${victim}"
  log "redis-cluster: kill -9 master ${victim} (pid ${pid}, slots from ${first})"
  t0="$(now_ms)"
  kill -9 "${pid}"
  # Done when every other node sees slot FIRST served by a live master other than the victim, and
  # cluster_state is ok everywhere.
  failed_over() {
    local p owner="" o
    for p in $(redis_ports); do
      ((p != victim)) || continue
      redis_up "${p}" || continue
      o="$(slot_map "${p}" | slot_owner "${first}")"
      [[ -n "${o}" && "${o}" != "${victim}" ]] || return 1
      [[ -z "${owner}" || "${o}" == "${owner}" ]] || return 1
      owner="${o}"
    done
    [[ -n "${owner}" && "$(rinfo "${owner}" replication role)" == master ]] || return 1
    redis_cluster_ok || return 1
    new_master="${owner}"
  }
  local new_master=""
  wait_for "${FAILOVER_SECS}" "a replica to take over from ${victim}" failed_over || exit 1
  took=$(($(now_ms) - t0))
  log "redis-cluster: ${new_master} took over from ${victim} in ${took} ms"
  echo "killed=${victim} new_master=${new_master} failover_ms=${took}"
}

redis_restart_node() {
  local p="${1:-}" d
  if ! is_uint "${p}" || ((p < BASE || p > BASE + 5)); then
    die "restart-node takes a port in ${BASE}..$((BASE + 5))"
  fi
  d="$(rdir "${p}")"
  ! redis_up "${p}" || die "the node on ${p} is running already"
  ! port_open "${p}" || die "127.0.0.1:${p} is taken by a process that is not ours"
  [[ -f "${d}/nodes.conf" ]] || die "no ${d}/nodes.conf: that node was never part of the cluster"
  redis_rejoin "${p}"
}

# Start the node on PORT from its nodes.conf and wait until it is a synced replica in an ok cluster.
redis_rejoin() {
  local p="$1" t0
  t0="$(now_ms)"
  redis_launch "${p}"
  wait_for 10 "redis on ${p} to answer" redis_up "${p}" || return 1
  rejoined() {
    [[ "$(rinfo "${p}" replication role)" == slave ]] &&
      [[ "$(rinfo "${p}" replication master_link_status)" == up ]] &&
      [[ "$(rinfo "${p}" replication master_sync_in_progress)" == 0 ]] &&
      redis_cluster_ok
  }
  wait_for "${WAIT_SECS}" "node ${p} to rejoin as a synced replica" rejoined || return 1
  log "redis-cluster: ${p} rejoined as a replica of $(rinfo "${p}" replication master_port) in $(($(now_ms) - t0)) ms"
  echo "restarted=${p} master=$(rinfo "${p}" replication master_port) took_ms=$(($(now_ms) - t0))"
}

# ---------------------------------------------------------------- Postgres primary + replica

REPLICA_NAME=streambank-replica

pg_bin() {
  local v
  v="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -1)"
  [[ -n "${v}" && -x "/usr/lib/postgresql/${v}/bin/pg_ctl" ]] ||
    die "no Postgres server in /usr/lib/postgresql (apt-get install postgresql)"
  echo "/usr/lib/postgresql/${v}/bin"
}
# initdb and postgres refuse to run as root: run the server's tools as the postgres user.
as_pg() {
  if ((EUID == 0)); then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}
pgdir() { echo "${DIR}/pg-$1"; }
pq() {
  local port="$1" db="$2"
  shift 2
  PGCONNECT_TIMEOUT=5 "${PGBIN}/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${port}" -U postgres \
    -d "${db}" "$@"
}
# True when the server on PORT answers and runs out of our data directory for ROLE.
pg_ours() {
  local port="$1" role="$2" dd
  dd="$(pq "${port}" postgres -c 'show data_directory' 2>/dev/null)" || return 1
  [[ "${dd}" == "$(pgdir "${role}")/data" ]]
}
pg_running_pid() {
  local f
  f="$(pgdir "$1")/data/postmaster.pid"
  [[ -f "${f}" ]] || return 1
  local pid
  pid="$(head -1 "${f}")"
  pid_alive "${pid}" && echo "${pid}"
}
pg_streaming() {
  [[ "$(pq "${PG_PRIMARY_PORT}" postgres -c "select count(*) from pg_stat_replication
        where application_name = '${REPLICA_NAME}' and state = 'streaming'" 2>/dev/null)" == 1 ]]
}
pg_has_db() { [[ "$(pq "$1" postgres -c "select 1 from pg_database where datname = 'streambank'" 2>/dev/null)" == 1 ]]; }
pg_healthy() {
  pg_ours "${PG_PRIMARY_PORT}" primary && pg_ours "${PG_REPLICA_PORT}" replica || return 1
  [[ "$(pq "${PG_PRIMARY_PORT}" postgres -c 'select pg_is_in_recovery()' 2>/dev/null)" == f ]] || return 1
  [[ "$(pq "${PG_REPLICA_PORT}" postgres -c 'select pg_is_in_recovery()' 2>/dev/null)" == t ]] || return 1
  pg_streaming && pg_has_db "${PG_PRIMARY_PORT}" && pg_has_db "${PG_REPLICA_PORT}"
}

pg_ctl_start() {
  local role="$1" port="$2" d
  d="$(pgdir "${role}")"
  as_pg "${PGBIN}/pg_ctl" -D "${d}/data" -l "${d}/postgres.log" -w -t "${WAIT_SECS}" \
    -o "-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=${d} -c fsync=off \
-c wal_level=replica -c max_wal_senders=5 -c hot_standby=on -c cluster_name=streambank-${role}" \
    start >/dev/null 9>&- || die "the Postgres ${role} did not start; see ${d}/postgres.log"
}

pg_teardown() {
  local role pid d
  for role in replica primary; do
    d="$(pgdir "${role}")"
    if pid="$(pg_running_pid "${role}")"; then
      as_pg "${PGBIN}/pg_ctl" -D "${d}/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        as_pg "${PGBIN}/pg_ctl" -D "${d}/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
      pid_alive "${pid}" && kill -9 "${pid}" 2>/dev/null || true
    fi
    rm -rf "${d}"
  done
}

pg_start() {
  local p pd rd t0
  t0="$(now_ms)"
  PGBIN="$(pg_bin)"
  if pg_healthy; then
    log "pg-replica: already up: primary 127.0.0.1:${PG_PRIMARY_PORT}, replica 127.0.0.1:${PG_REPLICA_PORT}"
    return 0
  fi
  if compgen -G "${DIR}/pg-*" >/dev/null; then
    log "pg-replica: a previous run left servers or files in ${DIR}; wiping them"
  fi
  pg_teardown
  for p in "${PG_PRIMARY_PORT}" "${PG_REPLICA_PORT}"; do
    ! port_open "${p}" || die "127.0.0.1:${p} is taken by a process that is not ours"
  done
  pd="$(pgdir primary)"
  rd="$(pgdir replica)"
  mkdir -p "${pd}" "${rd}"
  if ((EUID == 0)); then chown postgres: "${pd}" "${rd}"; fi
  chmod 700 "${pd}" "${rd}"

  as_pg "${PGBIN}/initdb" -D "${pd}/data" -A trust -U postgres --no-sync >"${pd}/initdb.log" 2>&1 ||
    die "initdb failed; see ${pd}/initdb.log"
  echo "host replication postgres 127.0.0.1/32 trust" >>"${pd}/data/pg_hba.conf"
  pg_ctl_start primary "${PG_PRIMARY_PORT}"

  as_pg "${PGBIN}/pg_basebackup" -h 127.0.0.1 -p "${PG_PRIMARY_PORT}" -U postgres -D "${rd}/data" \
    -R -X stream --checkpoint=fast --no-sync >"${rd}/basebackup.log" 2>&1 ||
    die "pg_basebackup failed; see ${rd}/basebackup.log"
  pg_ctl_start replica "${PG_REPLICA_PORT}"
  wait_for "${WAIT_SECS}" "the replica to stream from the primary" pg_streaming || exit 1

  # Created after the replica is up, so it arrives there by replication.
  pq "${PG_PRIMARY_PORT}" postgres -c 'create database streambank' >/dev/null
  wait_for "${WAIT_SECS}" "database streambank on the replica" pg_has_db "${PG_REPLICA_PORT}" || exit 1
  pg_healthy || die "pg-replica did not come up healthy; see ${pd}/postgres.log and ${rd}/postgres.log"
  log "pg-replica: primary 127.0.0.1:${PG_PRIMARY_PORT}, replica 127.0.0.1:${PG_REPLICA_PORT} streaming" \
    "in $(($(now_ms) - t0)) ms"
}

pg_stop() {
  PGBIN="$(pg_bin)"
  pg_teardown
  log "pg-replica: stopped, data removed"
}

pg_env() {
  echo "export DATABASE_URL=postgres://postgres@127.0.0.1:${PG_PRIMARY_PORT}/streambank"
  echo "export DATABASE_READ_URL=postgres://postgres@127.0.0.1:${PG_REPLICA_PORT}/streambank"
}

pg_lag() {
  local replay
  PGBIN="$(pg_bin)"
  # Replica first, then primary: the difference can only overstate the lag, never go negative.
  replay="$(pq "${PG_REPLICA_PORT}" postgres -c 'select pg_last_wal_replay_lsn()')" ||
    die "cannot reach the replica on ${PG_REPLICA_PORT}"
  [[ -n "${replay}" ]] || die "the server on ${PG_REPLICA_PORT} is not replaying WAL"
  pq "${PG_PRIMARY_PORT}" postgres -c "select pg_wal_lsn_diff(pg_current_wal_lsn(), '${replay}')::bigint" ||
    die "cannot reach the primary on ${PG_PRIMARY_PORT}"
}

pg_status() {
  local role port pid
  PGBIN="$(pg_bin)"
  for role in primary replica; do
    port="${PG_PRIMARY_PORT}"
    [[ "${role}" == replica ]] && port="${PG_REPLICA_PORT}"
    if pid="$(pg_running_pid "${role}")" && pg_ours "${port}" "${role}"; then
      echo "pg ${role}: 127.0.0.1:${port} pid ${pid}, in recovery: $(pq "${port}" postgres -c 'select pg_is_in_recovery()')"
    else
      echo "pg ${role}: 127.0.0.1:${port} down"
    fi
  done
  if pg_healthy; then
    echo "pg-replica: healthy, streaming, lag $(pg_lag) bytes"
  else
    echo "pg-replica: not healthy"
    return 1
  fi
}

# ---------------------------------------------------------------- main

main() {
  local engine="${1:-}" cmd="${2:-}"
  [[ -n "${engine}" && -n "${cmd}" ]] || usage
  shift 2
  check_settings
  case "${engine}:${cmd}" in
  redis-cluster:start) take_lock && redis_start ;;
  redis-cluster:stop) take_lock && redis_stop ;;
  redis-cluster:status) redis_status ;;
  redis-cluster:env) redis_env ;;
  redis-cluster:wait-ok) redis_wait_ok "$@" ;;
  redis-cluster:kill-master) take_lock && redis_kill_master "$@" ;;
  redis-cluster:restart-node) take_lock && redis_restart_node "$@" ;;
  pg-replica:start) take_lock && pg_start ;;
  pg-replica:stop) take_lock && pg_stop ;;
  pg-replica:status) pg_status ;;
  pg-replica:env) pg_env ;;
  pg-replica:lag) pg_lag ;;
  all:start) take_lock && redis_start && pg_start ;;
  all:stop) take_lock && redis_stop && pg_stop ;;
  all:status)
    local rc=0
    redis_status || rc=1
    pg_status || rc=1
    return "${rc}"
    ;;
  all:env) redis_env && pg_env ;;
  *) usage ;;
  esac
}

PGBIN=""
main "$@"
