#!/usr/bin/env bash
# Builds the StreamBank runtime image with podman, offline, then runs it against the host's Postgres to
# prove the image works:
#
#   1. podman, buildah and runc from apt (when missing), with a containers.conf that this host needs
#      (runtime runc, ulimits under the hard limits: cgroups v1 hybrid, no CAP_SYS_RESOURCE).
#   2. The pinned Debian base of Dockerfile.runtime, made locally with debootstrap (no registry for base
#      images is reachable) and tagged with the name the Dockerfile uses.
#   3. The binaries, built on the host: cargo build --release --locked (Debian 12 host, Debian 12 image:
#      the same glibc), then Dockerfile.runtime copies them into the runtime image.
#   4. bankctl migrate inside the container (--network host) against a scratch database, twice
#      (creation, then idempotence), and once against a closed port (must fail with one line).
#   5. When streambank-api is in the image: the api container on 127.0.0.1:18080/18081/19090 and
#      GET /readyz, which must answer 200.
#
# Usage: scripts/build-image.sh [--full]
#   --full  also builds the real multi-stage ./Dockerfile with podman (cargo-chef, compile in the
#           builder stage) from a local rust image made of the Debian base plus the host's toolchain.
#           Slow on a small machine.
# Environment: IMAGE (default localhost/streambank:dev), PG_URL (default postgres://postgres@127.0.0.1:5432),
#   CHECK_DB (default streambank_image_check), KEEP_DB=1 to keep the scratch database.
#
# The containers run read-only, as uid 10001, with every capability dropped, as in k8s/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

CACHE="${HOME}/.cache/streambank"
IMAGE="${IMAGE:-localhost/streambank:dev}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
CHECK_DB="${CHECK_DB:-streambank_image_check}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
BINARIES=(bankctl streambank-api streambank-relay streambank-worker)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${CACHE}/target}"
FULL=0

case "${1:-}" in
  "") ;;
  --full) FULL=1 ;;
  *) echo "usage: $0 [--full]" >&2; exit 2 ;;
esac

# Each step says how far into the run it starts (seconds), so the log shows where the time goes.
step() { printf '\n==> [%ss] %s\n' "${SECONDS}" "$*"; }
die() { echo "build-image: $*" >&2; exit 1; }

# Things this script starts, removed on exit (by the exact names it gave them).
CLEANUP_DIRS=()
CLEANUP_CONTAINERS=()
cleanup() {
  local c d
  for c in "${CLEANUP_CONTAINERS[@]}"; do podman rm -f "${c}" >/dev/null 2>&1 || true; done
  for d in "${CLEANUP_DIRS[@]}"; do rm -rf "${d}"; done
}
trap cleanup EXIT

# --- 1. podman ------------------------------------------------------------------------------------------
ensure_podman() {
  local missing=()
  for tool in podman buildah runc debootstrap strip; do
    command -v "${tool}" >/dev/null || missing+=("${tool}")
  done
  if ((${#missing[@]})); then
    step "installing ${missing[*]} (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc uidmap fuse-overlayfs \
      slirp4netns debootstrap binutils >/dev/null
  fi
  mkdir -p "${CACHE}"
  # crun (podman's default) cannot run here: it asks for ulimits above the hard limits and does not
  # support cgroups v1 "hybrid". runc with lower ulimits works.
  cat >"${CACHE}/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
  export CONTAINERS_CONF="${CACHE}/containers.conf"
  podman --version
}

# --- 2. the Debian base image ---------------------------------------------------------------------------
# The bookworm mirror named in apt's sources (one-line or deb822 format); deb.debian.org otherwise.
debian_mirror() {
  local files=() f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "${f}" ]] && files+=("${f}")
  done
  local mirror=""
  if ((${#files[@]})); then
    mirror="$(awk '
      function found(u) { print u; exit }
      /^deb[ \t]/ {
        i = 2
        if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == "bookworm") found($i)
        next
      }
      /^URIs:/   { uri = $2 }
      /^Suites:/ { suites = " " substr($0, 8) " " }
      /^[ \t]*$/ { if (uri != "" && suites ~ / bookworm /) found(uri); uri = ""; suites = "" }
      END        { if (uri != "" && suites ~ / bookworm /) print uri }
    ' "${files[@]}" | head -n 1)"
  fi
  echo "${mirror:-http://deb.debian.org/debian}"
}

# docker.io/library/<name> for a short Docker Hub name such as debian:12.15-slim.
qualified() {
  case "$1" in
    */*/*) echo "$1" ;;
    */*) echo "docker.io/$1" ;;
    *) echo "docker.io/library/$1" ;;
  esac
}

# What makes Debian's "-slim" images slim, done to the debootstrap tree: dpkg leaves out documentation,
# manuals and translations (now and in later installs), and apt keeps no package caches in the image.
slim_down() {
  local rootfs="$1"
  cat >"${rootfs}/etc/dpkg/dpkg.cfg.d/streambank-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  cat >"${rootfs}/etc/apt/apt.conf.d/streambank-slim" <<'EOF'
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  find "${rootfs}/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "${rootfs}/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "${rootfs}/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  rm -rf "${rootfs}"/usr/share/man/* "${rootfs}"/usr/share/info/* "${rootfs}"/usr/share/lintian/* \
    "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/cache/apt/*.bin "${rootfs}"/var/lib/apt/lists/*
}

ensure_base_image() {
  local base tag mirror rootfs version
  base="$(awk '$1 == "FROM" { print $2; exit }' Dockerfile.runtime)"
  [[ -n "${base}" ]] || die "no FROM line in Dockerfile.runtime"
  tag="$(qualified "${base}")"
  if podman image exists "${tag}"; then
    echo "base image ${tag} is present"
    return
  fi
  mirror="$(debian_mirror)"
  step "making ${tag} with debootstrap (minbase bookworm from ${mirror})"
  rootfs="$(mktemp -d /tmp/streambank-rootfs.XXXXXX)"
  CLEANUP_DIRS+=("${rootfs}")
  nice -n 19 debootstrap --variant=minbase bookworm "${rootfs}" "${mirror}" >"${CACHE}/debootstrap.log" 2>&1 ||
    die "debootstrap failed; see ${CACHE}/debootstrap.log"
  slim_down "${rootfs}"
  version="$(cat "${rootfs}/etc/debian_version")"
  echo "debootstrap made Debian ${version}"
  # The pin names a point release; the mirror serves the newest one. Same ABI either way, but say so.
  case "${base}" in
    *"${version}"*) ;;
    *) echo "note: the mirror gave Debian ${version}, the Dockerfile pins ${base}; tagging it as the pin" ;;
  esac
  tar -C "${rootfs}" -c . | podman import --change 'CMD ["/bin/bash"]' - "${tag}" >/dev/null
  echo "tagged ${tag}"
}

# --- 3. binaries and the image --------------------------------------------------------------------------
# Of the four binaries, those whose package exists in the workspace today.
present_packages() {
  cargo metadata --no-deps --format-version 1 --locked |
    python3 -c '
import json, sys
wanted = sys.argv[1:]
names = {p["name"] for p in json.load(sys.stdin)["packages"]}
print("\n".join(w for w in wanted if w in names))
' "${BINARIES[@]}"
}

build_binaries() {
  mapfile -t PACKAGES < <(present_packages)
  ((${#PACKAGES[@]})) || die "none of ${BINARIES[*]} is a package of this workspace"
  step "cargo build --release --locked (${PACKAGES[*]}) into ${CARGO_TARGET_DIR}"
  local args=() p
  for p in "${PACKAGES[@]}"; do args+=(--package "${p}"); done
  nice -n 19 cargo build --release --locked "${args[@]}"
}

build_image() {
  local ctx p
  ctx="$(mktemp -d /tmp/streambank-image-ctx.XXXXXX)"
  CLEANUP_DIRS+=("${ctx}")
  mkdir -p "${ctx}/bin"
  # The workspace's release profile keeps line tables (for profiling the benchmarks); the image does not
  # need them, and they are four fifths of each binary's size. Stripped in the staging copy only, so the
  # shared target directory is untouched. Symbols stay, so a panic's backtrace still names functions.
  for p in "${PACKAGES[@]}"; do
    install -m 0755 "${CARGO_TARGET_DIR}/release/${p}" "${ctx}/bin/${p}"
    strip --strip-debug "${ctx}/bin/${p}"
  done
  echo "binaries in the image: $(du -sh "${ctx}/bin" | cut -f1) ($(cd "${ctx}/bin" && du -h -- * | tr '\t\n' ' '))"
  step "podman build -f Dockerfile.runtime -t ${IMAGE} (binaries: ${PACKAGES[*]})"
  nice -n 19 podman build --pull=never --network host -f "${ROOT}/Dockerfile.runtime" -t "${IMAGE}" "${ctx}"
  podman image ls "${IMAGE}"
  echo "user inside the image: $(podman run --rm "${IMAGE}" id)"
}

# Optional: the real multi-stage Dockerfile. The local rust image is a stand-in for rust:<pin>: the same
# Debian base plus the host's toolchain, with CARGO_HOME and PATH laid out as in the official image.
build_full() {
  local rust_base rust_tag sysroot ctr
  rust_base="$(awk '$1 == "FROM" && $2 ~ /^rust:/ { print $2; exit }' Dockerfile)"
  rust_tag="$(qualified "${rust_base}")"
  if ! podman image exists "${rust_tag}"; then
    step "making ${rust_tag} from the Debian base and the host toolchain"
    sysroot="$(rustc --print sysroot)"
    ctr="$(buildah from --pull=never "$(qualified "$(awk '$1 == "FROM" { print $2; exit }' Dockerfile.runtime)")")"
    CLEANUP_CONTAINERS+=("${ctr}")
    buildah run --network host "${ctr}" -- sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates pkg-config >/dev/null && rm -rf /var/lib/apt/lists/*'
    buildah copy "${ctr}" "${sysroot}" /usr/local/rust >/dev/null
    buildah config --env CARGO_HOME=/usr/local/cargo --env RUSTUP_HOME=/usr/local/rustup \
      --env PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${ctr}"
    buildah commit -q "${ctr}" "${rust_tag}" >/dev/null
    buildah rm "${ctr}" >/dev/null
  fi
  step "podman build -f Dockerfile (multi-stage, BINARIES=${PACKAGES[*]}) -t ${IMAGE%:*}:full"
  # The host's CA bundle is mounted for the build only (the registry is reached through a proxy whose CA
  # a stock image does not trust); it is not part of any layer.
  nice -n 19 podman build --pull=never --network host \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    --build-arg BINARIES="${PACKAGES[*]}" -f Dockerfile -t "${IMAGE%:*}:full" .
  podman image ls "${IMAGE%:*}:full"
  echo "user inside the image: $(podman run --rm "${IMAGE%:*}:full" id)"
  echo "bankctl from the multi-stage image:"
  run_in_image "${IMAGE%:*}:full" -e DATABASE_URL="${PG_URL}/${CHECK_DB}" -- bankctl migrate
  prove_api "${IMAGE%:*}:full"
}

# --- 4 and 5. run it ------------------------------------------------------------------------------------
# run_in_image IMAGE [podman run options] -- COMMAND...: as k8s runs it (read-only, no capabilities).
run_in_image() {
  local image="$1" opts=()
  shift
  while (($#)) && [[ "$1" != "--" ]]; do opts+=("$1"); shift; done
  shift
  podman run --rm --network host --read-only --cap-drop ALL --security-opt no-new-privileges \
    "${opts[@]}" "${image}" "$@"
}

prove_migrate() {
  command -v pg_isready >/dev/null && { pg_isready -q -d "${PG_URL}/postgres" || die "Postgres does not answer at ${PG_URL}"; }
  local url="${PG_URL}/${CHECK_DB}" out status
  drop_check_db   # so that the first run below shows the database being created
  step "bankctl migrate in the container, DATABASE_URL=${url}"
  run_in_image "${IMAGE}" -e DATABASE_URL="${url}" -- bankctl migrate
  step "bankctl migrate again (idempotent)"
  run_in_image "${IMAGE}" -e DATABASE_URL="${url}" -- bankctl migrate
  step "bankctl migrate against a closed port (must fail with one line)"
  status=0
  out="$(run_in_image "${IMAGE}" -e DATABASE_URL="postgres://postgres@127.0.0.1:1/${CHECK_DB}" -- bankctl migrate 2>&1)" || status=$?
  printf '%s\n(exit %s)\n' "${out}" "${status}"
  ((status != 0)) || die "bankctl migrate succeeded against a closed port"
  [[ "$(printf '%s\n' "${out}" | wc -l)" -eq 1 ]] || die "expected one line from the failed migrate"
  if command -v psql >/dev/null; then
    echo "migrations recorded in ${CHECK_DB}: $(psql "${url}" -Atc 'SELECT count(*) FROM _sqlx_migrations WHERE success')"
  fi
}

# prove_api IMAGE: the api container answers 200 on /readyz, then stops cleanly on SIGTERM.
prove_api() {
  local image="$1"
  if [[ ! " ${PACKAGES[*]} " == *" streambank-api "* ]]; then
    step "streambank-api is not in the workspace yet: api readiness check skipped"
    return
  fi
  local name="streambank-image-check-api-$$" code="" i
  step "streambank-api in ${image}: HTTP 127.0.0.1:18080, gateway :18081, gRPC :19090"
  CLEANUP_CONTAINERS+=("${name}")
  podman run -d --name "${name}" --network host --read-only --tmpfs /tmp --cap-drop ALL \
    --security-opt no-new-privileges \
    -e DATABASE_URL="${PG_URL}/${CHECK_DB}" -e REDIS_URL="${REDIS_URL}" \
    -e HTTP_ADDR=127.0.0.1:18080 -e GRPC_ADDR=127.0.0.1:19090 -e GATEWAY_ADDR=127.0.0.1:18081 \
    -e METRICS_ADDR=127.0.0.1:19100 \
    -e GATEWAY_UPSTREAM=http://127.0.0.1:19090 -e STREAM_PREFIX="imagecheck$$" \
    "${image}" streambank-api >/dev/null
  for i in $(seq 1 60); do
    code="$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/readyz || true)"
    [[ "${code}" == "200" ]] && break
    sleep 0.5
  done
  echo "GET http://127.0.0.1:18080/readyz -> ${code:-no answer} (after ${i} tries)"
  if [[ "${code}" != "200" ]]; then
    podman logs "${name}" 2>&1 | tail -n 30
    die "the api container is not ready"
  fi
  curl -s http://127.0.0.1:18080/readyz && echo
  podman stop -t 10 "${name}" >/dev/null
  echo "api container stopped on SIGTERM with exit code $(podman inspect -f '{{.State.ExitCode}}' "${name}")"
  podman rm -f "${name}" >/dev/null
}

drop_check_db() {
  if [[ "${KEEP_DB:-0}" == 1 ]] || ! command -v psql >/dev/null; then return; fi
  PGOPTIONS='-c client_min_messages=warning' psql "${PG_URL}/postgres" -qc "DROP DATABASE IF EXISTS \"${CHECK_DB}\" WITH (FORCE)"
  echo "dropped scratch database ${CHECK_DB}"
}

step "podman"
ensure_podman
ensure_base_image
build_binaries
build_image
prove_migrate
prove_api "${IMAGE}"
if ((FULL)); then build_full; fi
drop_check_db
step "image ${IMAGE} built and checked"
