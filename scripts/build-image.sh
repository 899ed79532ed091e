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

PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
CHECK_DB="${CHECK_DB:-streambank_image_check}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
FULL=0

case "${1:-}" in
  "") ;;
  --full) FULL=1 ;;
  *) echo "usage: $0 [--full]" >&2; exit 2 ;;
esac

# step, die, cleanup; ensure_podman, ensure_base_image, build_binaries, build_image (steps 1 to 3).
# shellcheck source=scripts/lib/image.sh
source "${ROOT}/scripts/lib/image.sh"

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
