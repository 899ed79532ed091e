# Shell shared by scripts/build-image.sh and scripts/compose-run.sh (sourced, never run): podman set up
# for this kind of host, the Debian base image made with debootstrap, the release binaries built on the
# host, and the StreamBank runtime image around them (Dockerfile.runtime).
#
# The sourcing script sets ROOT (the checkout) and may set IMAGE, CACHE and CARGO_TARGET_DIR first.
# shellcheck shell=bash

CACHE="${CACHE:-${HOME}/.cache/streambank}"
IMAGE="${IMAGE:-localhost/streambank:dev}"
BINARIES=(bankctl streambank-api streambank-relay streambank-worker)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${CACHE}/target}"

# Each step says how far into the run it starts (seconds), so the log shows where the time goes.
step() { printf '\n==> [%ss] %s\n' "${SECONDS}" "$*"; }
die() { echo "${0##*/}: $*" >&2; exit 1; }

# Things the script starts, removed on exit (by the exact names it gave them). CLEANUP_HOOKS are
# functions run first, with the script's exit status in EXIT_STATUS (compose-run.sh tears its project
# down there).
CLEANUP_HOOKS=()
CLEANUP_DIRS=()
CLEANUP_CONTAINERS=()
cleanup() {
  # shellcheck disable=SC2034 # read by the hooks
  EXIT_STATUS=$?
  local c d h
  for h in "${CLEANUP_HOOKS[@]}"; do "${h}" || true; done
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
