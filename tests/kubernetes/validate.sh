#!/usr/bin/env bash
# Validates the manifests in deploy/kubernetes offline, against the OpenAPI
# schemas that the kubernetes-validate package bundles, in strict mode, so an
# unknown or misspelled field fails too. Needs no cluster and no network once
# the package is installed.
#
# Installs kubernetes-validate from PyPI into a virtual environment in
# tests/kubernetes/.venv (ignored by git) on the first run.
#
# Environment:
#   RAFTQ_KUBERNETES_VERSIONS   versions to validate against, space-separated
#                               (default: the oldest supported and the newest
#                               that the pinned package bundles)
set -euo pipefail

repository_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repository_root"

# The package version sets which Kubernetes schemas exist: 1.37.0 bundles
# 1.25 to 1.37.
readonly VALIDATOR_VERSION=1.37.0
# 1.28 is the oldest version the StatefulSet runs on, because it needs the
# apps.kubernetes.io/pod-index pod label (beta and on by default in 1.28).
kubernetes_versions="${RAFTQ_KUBERNETES_VERSIONS:-1.28.0 1.37.0}"

virtual_environment="tests/kubernetes/.venv"
validator="$virtual_environment/bin/kubernetes-validate"

installed_version() {
    "$virtual_environment/bin/python" -c \
        'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null || true
}

if [[ ! -x "$validator" || "$(installed_version)" != "$VALIDATOR_VERSION" ]]; then
    echo "validate: installing kubernetes-validate $VALIDATOR_VERSION into $virtual_environment"
    python3 -m venv "$virtual_environment"
    "$virtual_environment/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==$VALIDATOR_VERSION"
fi

manifests=(deploy/kubernetes/*.yaml)
if [[ ! -e "${manifests[0]}" ]]; then
    echo "validate: no manifests found in deploy/kubernetes" >&2
    exit 1
fi

passed=0
failed=0
for version in $kubernetes_versions; do
    for manifest in "${manifests[@]}"; do
        if "$validator" --strict --kubernetes-version "$version" "$manifest"; then
            passed=$((passed + 1))
        else
            echo "validate: $manifest is invalid for Kubernetes $version" >&2
            failed=$((failed + 1))
        fi
    done
done

echo "kubernetes: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
